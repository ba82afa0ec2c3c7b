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
