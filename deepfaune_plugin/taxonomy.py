"""DeepFaune labels as taxa (scientific name, rank, classification, vernacular names).

The table is data (`models/taxonomy.yaml`, beside the model cards) so the choices it makes
(e.g. micromammal -> class Mammalia) are reviewed in one place; the file's header states the rule.
Keys are DeepFaune's English labels, the language-free keys `Decision.prediction_key` carries.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

import yaml

from .models.cards import cards_dir

RANKS = ("species", "genus", "family", "order", "class")

#: Namespace of the Timelapse guids: uuid5(namespace, key) is stable across releases and machines.
#: It identifies a DeepFaune label, not a taxon in any external registry.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://www.deepfaune.cnrs.fr/deepfaune-plugin/taxonomy")


@dataclass(frozen=True)
class Taxon:
    """One DeepFaune label as a taxon; empty strings for ranks below `rank`."""

    key: str
    scientific_name: str
    rank: str
    kingdom: str
    class_: str
    order: str
    family: str
    genus: str
    species: str  # the epithet only ("elaphus"), empty above species rank
    vernacular: Mapping[str, str] = field(default_factory=dict)  # ISO 639-3 -> name
    note: str = ""  # why this name/rank, and what look-alikes get the same label

    @property
    def guid(self) -> str:
        return str(uuid.uuid5(GUID_NAMESPACE, self.key))


def _load() -> dict[str, Taxon]:
    path = cards_dir() / "taxonomy.yaml"
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    kingdom = data["kingdom"]
    out: dict[str, Taxon] = {}
    for key, entry in data["taxa"].items():
        out[key] = Taxon(
            key=key,
            scientific_name=entry["scientific_name"],
            rank=entry["rank"],
            kingdom=kingdom,
            class_=entry.get("class", ""),
            order=entry.get("order", ""),
            family=entry.get("family", ""),
            genus=entry.get("genus", ""),
            species=entry.get("species", ""),
            vernacular=MappingProxyType(dict(entry["vernacular"])),
            note=entry.get("note", ""),
        )
    return out


@lru_cache(maxsize=1)
def taxa() -> Mapping[str, Taxon]:
    """Every taxon of the table, by English key."""
    return MappingProxyType(_load())


def taxon(english_key: str) -> Taxon:
    """The taxon of a DeepFaune English label (also the bird groups and "human")."""
    table = taxa()
    try:
        return table[english_key]
    except KeyError:
        raise KeyError(
            f"{english_key!r} is not a DeepFaune class with a taxon (the taxonomy table knows "
            f"{len(table)} keys: DeepFaune 1.3-1.5 English labels, the 8 bird groups and 'human'; "
            "'empty', 'vehicle' and 'undefined' have none)"
        ) from None


def taxon_for_key(key: str, bird_class: str = "bird") -> Taxon | None:
    """The taxon a decision key names, or None for a key without one ("empty", "vehicle", "undefined", "failed").

    The bird option's keys "<bird_class> <group>" name their group ("bird passerine" -> Passeriformes);
    "bird undefined" (no group above the threshold), and any group the table lacks, name the bird class.
    """
    table = taxa()
    if key in table:
        return table[key]
    prefix = f"{bird_class} "
    if key.startswith(prefix) and len(key) > len(prefix):
        return table.get(key[len(prefix):], table.get(bird_class))
    return None


#: Class-rank labels that pool a whole class only for some of its orders: micromammal (class Mammalia) is the
#: small rodents and eulipotyphlans, never "any mammal"; bird (class Aves) is any bird.
_CLASS_POOLS = {"Aves": ("bird", None), "Mammalia": ("micromammal", ("Rodentia", "Eulipotyphla"))}


def key_for_name(name: str, higher: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The DeepFaune key a person's scientific name stands for, and how it was found (or why none was).

    `higher`: what the source says of the name's classification (genus, family, order, class; e.g. a Camtrap DP
    package's `taxonomic` entry), where it says it.  Rule: the exact scientific name of a table entry ("Aves" is
    bird); else the only species or genus entry of the name's genus (its first word); else an entry of the
    table at the name's family, then order, then class (a class only where it pools the whole class for that
    order: any bird is bird, a rodent or a shrew micromammal). Several entries of one genus (Canis: wolf, dog,
    golden jackal) name no key: the genus does not say which.
    """
    text = " ".join(str(name or "").split())
    if not text:
        return None, "no scientific name"
    higher = {k.casefold(): str(v).strip() for k, v in (higher or {}).items() if v}
    table = taxa()
    exact = [t.key for t in table.values() if t.scientific_name.casefold() == text.casefold()]
    if exact:
        preferred = _CLASS_POOLS.get(table[exact[0]].scientific_name, (None,))[0]
        if len(exact) == 1 or preferred in exact:
            key = exact[0] if len(exact) == 1 or preferred is None else preferred
            if table[key].rank == "class" and key != "bird":
                return None, f"{text} is a whole class; {key} holds only part of it"
            return key, f"scientific name {table[key].scientific_name}"
    genus = higher.get("genus") or text.split(" ")[0]
    same = [t.key for t in table.values() if t.genus and t.genus.casefold() == genus.casefold()
            and t.rank in ("species", "genus") and t.key != "human"]
    if len(same) == 1:
        return same[0], f"genus {table[same[0]].genus}"
    if len(same) > 1:
        return None, f"genus {genus} holds several DeepFaune classes ({', '.join(sorted(same))})"
    for rank in ("family", "order"):
        value = higher.get(rank, "")
        found = [t.key for t in table.values() if t.rank == rank and value
                 and t.scientific_name.casefold() == value.casefold()]
        if len(found) == 1:
            return found[0], f"{rank} {value}"
    klass = higher.get("class", "")
    for sci, (key, orders) in _CLASS_POOLS.items():
        if klass.casefold() == sci.casefold() and (orders is None or higher.get("order", "") in orders):
            return key, f"class {sci}" + (f", order {higher['order']}" if orders else "")
    return None, "no DeepFaune class (the taxonomy table has neither the name nor its genus" + \
        (", family or order" if higher else "; the source gives no family, order or class for it") + ")"
