"""DeepFaune decisions as Wildlife Insights identifications (the taxonomy columns of images.csv).

`wi_taxon_id` is Wildlife Insights' own identifier of a taxon. Only identifiers published by Wildlife Insights
itself are used: those of `WI_TAXA` appear in Conservation International's public example data
(github.com/ConservationInternational/Wildlife-Insights----Data-Migration, Dataset/London_HogWatch/
London_HogWatch_images.csv, commit 8652a28). Every other DeepFaune class is written with its scientific
classification and an empty `wi_taxon_id` (README: "Taxon identifiers").
"""
from __future__ import annotations

from dataclasses import dataclass

from deepfaune_plugin.api import Decision, taxon_for_key

#: Who made an identification, as `identified_by` says it. Wildlife Insights writes "Computer vision" for its
#: own AI; a person's name otherwise.
MACHINE_AUTHORS = ("computer vision",)
AUTHOR_PREFIX = "DeepFaune"


@dataclass(frozen=True)
class WITaxon:
    """A taxon as Wildlife Insights writes it (class ... species epithet, common name, its id)."""

    wi_taxon_id: str
    class_: str
    order: str
    family: str
    genus: str
    species: str
    common_name: str


#: DeepFaune key -> the taxon Wildlife Insights publishes for it (see the module's docstring for the source).
#: DeepFaune's dog is Canis familiaris; Wildlife Insights names the same taxon Canis lupus familiaris.
WI_TAXA = {
    "fox": WITaxon("ac0e8ba7-7261-4d17-8645-11ed3d02165a", "Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes",
                   "Red Fox"),
    "cat": WITaxon("9212982e-8a58-4775-a6ac-e9a43110d8f5", "Mammalia", "Carnivora", "Felidae", "Felis", "catus",
                   "Domestic Cat"),
    "hedgehog": WITaxon("0a11c18f-e253-4651-bb1b-4c642e8a03a7", "Mammalia", "Eulipotyphla", "Erinaceidae",
                        "Erinaceus", "europaeus", "Western European Hedgehog"),
    "dog": WITaxon("3d80f1d6-b1df-4966-9ff4-94053c7a902a", "Mammalia", "Carnivora", "Canidae", "Canis",
                   "lupus familiaris", "Domestic Dog"),
}

#: The columns an identification fills; what a person may have added to an image (age, sex, individual...) is
#: cleared when DeepFaune replaces a machine's identification, since it described that identification.
TAXON_COLUMNS = ("wi_taxon_id", "class", "order", "family", "genus", "species", "common_name")
IDENTIFICATION_COLUMNS = ("is_blank", "identified_by", *TAXON_COLUMNS, "uncertainty", "number_of_objects",
                          "cv_confidence")
CLEARED_COLUMNS = (*IDENTIFICATION_COLUMNS, "age", "sex", "animal_recognizable", "individual_id",
                   "individual_animal_notes", "behavior", "markings", "bounding_boxes")

#: Common names for the decisions that are not a taxon. "Blank" and "Vehicle" are the names Wildlife Insights
#: shows; "Animal" stands for DeepFaune's "undefined" (an animal DeepFaune could not name above the threshold).
NON_TAXON_NAMES = {"empty": "Blank", "vehicle": "Vehicle", "undefined": "Animal"}


def author(version: str) -> str:
    """`identified_by` of DeepFaune's rows: says the model and version, and is how a later run knows its own."""
    return f"{AUTHOR_PREFIX} {version}"


def is_machine(identified_by: str) -> bool:
    text = identified_by.strip().casefold()
    return text in MACHINE_AUTHORS or text.startswith(AUTHOR_PREFIX.casefold())


def identification(decision: Decision, version: str, blank: tuple[str, str]) -> dict[str, str] | None:
    """The identification columns for one image, or None when DeepFaune has no answer (a failed file).

    Sequence-level answer (`prediction_key`, `score`), as DeepFaune's own table, or the label a person gave
    in `deepfaune review` (which the decision then carries, `decision.human` saying who); `blank` is the
    (yes, no) spelling of is_blank the file already uses.
    """
    key = decision.prediction_key
    if decision.failure or key == "failed":
        return None
    row = dict.fromkeys(IDENTIFICATION_COLUMNS, "")
    row["is_blank"] = blank[0] if key == "empty" else blank[1]
    if decision.human is not None:  # a label given in `deepfaune review`: a person's, no machine confidence
        row["identified_by"] = decision.human.reviewer.strip() or "deepfaune review"
    else:
        row["identified_by"] = author(version)
        row["cv_confidence"] = f"{decision.score:.2f}"
    if key in NON_TAXON_NAMES:
        row["common_name"] = NON_TAXON_NAMES[key]
        if key != "empty":
            row["number_of_objects"] = str(max(decision.count, 1))
        return row
    published = WI_TAXA.get(key)
    if published is not None:
        row.update(wi_taxon_id=published.wi_taxon_id, **{"class": published.class_}, order=published.order,
                   family=published.family, genus=published.genus, species=published.species,
                   common_name=published.common_name)
    else:
        taxon = taxon_for_key(key)
        if taxon is not None:
            row.update(**{"class": taxon.class_}, order=taxon.order, family=taxon.family, genus=taxon.genus,
                       species=taxon.species)
            if taxon.rank == "class":  # Aves/Mammalia rows name only the class
                row.update(order="", family="", genus="", species="")
        row["common_name"] = "Human" if key == "human" else key  # the English label, whatever --lang says
    count = decision.humancount if key == "human" else decision.count
    row["number_of_objects"] = str(max(count, 1))
    return row
