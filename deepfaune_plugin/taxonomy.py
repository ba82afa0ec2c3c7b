"""DeepFaune labels as taxa (scientific name, rank, classification, vernacular names).

The table is data (`models/taxonomy.yaml`, beside the model cards) so the choices it makes
(e.g. micromammal -> class Mammalia) are reviewed in one place; the file's header states the rule.
Keys are DeepFaune's English labels, the language-free keys `Decision.prediction_key` carries.
"""
from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Iterable, Mapping

import yaml

from .decisions import class_keys
from .models.cards import cards_dir
from .types import ClassTable

RANKS = ("species", "genus", "family", "order", "class")
#: What separates the labels of a species list in one cell ("fox:2;badger", "fox | badger").
SPECIES_SEPARATORS = re.compile(r"[;|]")
MAX_SPECIES_COUNT = 10_000  # animals of one species in one file: a larger count is a typing slip

#: Namespace of the Timelapse guids: uuid5(namespace, key) is stable across releases and machines.
#: It identifies a DeepFaune label, not a taxon in any external registry.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://www.deepfaune.cnrs.fr/deepfaune-plugin/taxonomy")


@dataclass(frozen=True)
class Taxon:
    """One DeepFaune label as a taxon; empty strings for ranks below `rank`.

    Attributes:
        key: The label's English key, as `Decision.prediction_key` ("red deer", "bird").
        scientific_name: The taxon's scientific name ("Cervus elaphus", "Aves").
        rank: Its rank: "species", "genus", "family", "order", "class"...
        kingdom: "Animalia".
        class_: The class ("Mammalia", "Aves"); `class` is a Python keyword.
        order: The order, or "" below `rank`.
        family: The family, or "" below `rank`.
        genus: The genus, or "".
        species: The species epithet only ("elaphus"), "" above species rank.
        vernacular: Common names by ISO 639-3 language code ("fra", "eng", "deu"...).
        note: Why this name and rank, and which look-alikes get the same label.
    """

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


#: What people write for a file that shows no animal, beside the card's own words in each of its languages.
_NON_ANIMAL_WORDS = {"empty": "empty", "blank": "empty", "vide": "empty", "human": "human", "person": "human",
                     "humain": "human", "vehicle": "vehicle", "véhicule": "vehicle", "vehicule": "vehicle"}
_AMBIGUOUS = "\x00"


def fold(text: str) -> str:
    """A label as people's labels are compared: spacing, case and accents aside, "_" a space ("Micromammifère "
    -> "micromammifere", "Red_Deer" -> "red deer"): a label typed without accents, or made a folder name, is
    the same label."""
    text = " ".join(str(text).replace("_", " ").split()).casefold()
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


class LabelReader:
    """The one rule by which a person's label becomes a key of a model, whatever holds it (a --labels file, a
    Timelapse data field, a camtrapR species folder, a Camtrap DP observation, a label search): the model's
    label in any of its languages ("renard", "fox"), or "empty"/"blank", "human", "vehicle"; else a taxon of
    the table (its key, a vernacular name in any of the table's languages, or a scientific name, "Vulpes
    vulpes") taken to the class of the model that holds it; spacing, case and accents aside. A bird group is
    the model's bird class unless the bird option is on ("bird anseriform" then). Exact spellings win over
    accent-free ones, and an accent-free spelling two classes would share names neither.

    Several labels of one file (two Timelapse rows, two observations of one event) agree when they name one
    key after this mapping (a heron, "bird", and a mallard, "anseriform", are both bird without the option)."""

    def __init__(self, classes: ClassTable, bird: bool = False):
        self.classes, self.bird = classes, bird
        english = class_keys(classes)
        self._english = set(english)
        self._bird_groups: set[str] = set()
        exact: dict[str, str] = {}  # casefolded spelling -> model key or taxon key
        for labels in classes.names.values():
            for i, label in enumerate(labels):
                exact.setdefault(" ".join(label.split()).casefold(), english[i])
        for kind, by_lang in classes.non_animal.items():
            if kind == "undefined":  # a person's label is never "undefined"
                continue
            for label in by_lang.values():
                exact.setdefault(label.casefold(), _NON_ANIMAL_WORDS.get(kind, kind))
        exact.update(_NON_ANIMAL_WORDS)
        self._english |= set(_NON_ANIMAL_WORDS.values())  # keys of their own, whatever the table says of "human"
        if classes.bird_names:
            groups = list(classes.bird_names.get("en") or next(iter(classes.bird_names.values())))
            self._bird_groups = set(groups)
            for labels in classes.bird_names.values():
                for i, label in enumerate(labels):
                    exact.setdefault(label.casefold(), groups[i])
        table = taxa()
        for t in table.values():
            exact.setdefault(t.key.casefold(), t.key)
            for name in t.vernacular.values():
                exact.setdefault(" ".join(name.split()).casefold(), t.key)
        folded: dict[str, str] = {}
        for spelling, key in exact.items():
            f = fold(spelling)
            folded[f] = key if folded.get(f, key) == key else _AMBIGUOUS
        self._exact, self._folded = exact, folded
        self._memo: dict[str, str | None] = {}

    def key(self, text: str) -> str | None:
        """The model key a person's label names, or None when it names no class of the model."""
        spaced = " ".join(str(text).split()).casefold()
        if spaced not in self._memo:
            found = self._exact.get(spaced)
            if found is None:
                folded = self._folded.get(fold(spaced))
                found = folded if folded != _AMBIGUOUS else None
            prefix = f"{self.classes.bird_class} "
            if found is None and spaced.startswith(prefix):  # a bird option's key, "bird passerine"
                found = self._exact.get(spaced[len(prefix):])
                found = found if found in self._bird_groups else None
            if found is None:
                found = key_for_name(spaced)[0]
            self._memo[spaced] = self._to_model(found) if found else None
        return self._memo[spaced]

    def agreed(self, texts: Iterable[str]) -> tuple[str | None, list[str | None]]:
        """(the one key several labels of a file name, or None) and the keys they name (None among them for a
        label naming no class), sorted: [] for no label, several for labels that disagree."""
        keys = {self.key(t) for t in texts}
        named: list[str | None] = [*sorted(k for k in keys if k is not None), *([None] if None in keys else [])]
        return (named[0] if len(named) == 1 else None), named

    def species_list(self, text: str) -> tuple[dict[str, int], list[str]]:
        """A cell naming several labels ("fox:2;badger", "renard | blaireau"): {key: how many} and the parts that
        name no class (or carry a count that is no whole number from 1 to MAX_SPECIES_COUNT).  Parts are split on
        ';' and '|'; "name:N" says N animals, a name alone one; a key named twice adds up."""
        counts: dict[str, int] = {}
        unknown: list[str] = []
        for part in SPECIES_SEPARATORS.split(str(text)):
            part = " ".join(part.split())
            if not part:
                continue
            name, colon, number = part.rpartition(":")
            if not colon:
                name, number = part, "1"
            key = self.key(name)
            n = int(number) if number.strip().isdigit() else -1
            if key is None or not 1 <= n <= MAX_SPECIES_COUNT:
                unknown.append(part)
                continue
            counts[key] = counts.get(key, 0) + n
        return counts, unknown

    def _to_model(self, key: str) -> str | None:
        classes = self.classes
        if key in self._bird_groups:
            return f"{classes.bird_class} {key}" if self.bird else classes.bird_class
        if key in self._english:
            return key
        table = taxa()
        t = table.get(key)
        if t is None:
            return None
        for value in (t.genus, t.family, t.order, t.class_):  # the model class that holds this taxon
            if value == "Aves" and classes.bird_class in self._english:
                return classes.bird_class
            holders = [k for k in self._english if k in table and value and table[k].scientific_name == value]
            if len(holders) == 1:
                return holders[0]
        return None
