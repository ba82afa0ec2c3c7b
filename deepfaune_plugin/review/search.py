"""The review page's label search (`/`): a class found as a person names it, by one rule kept here.

A person types a label in whatever language they think in, or its scientific name, with or without accents
("Gams", "gamse", "Rupicapra", "écureuil"). The page sends what is typed and shows what this returns, so the
rule (taxonomy.fold for case and accents, taxonomy.LabelReader for a name that is no class's own) lives in
Python only, never a second copy in the script.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..corrections import label_choices, label_text
from ..taxonomy import LabelReader, fold, taxon_for_key
from ..types import ClassTable

MAX_QUERY = 100  # characters of a search: a label, never a paragraph
_WORD = re.compile(r"[\s\-/()']+")


@dataclass(frozen=True)
class _Choice:
    key: str
    label: str  # as the run's language writes it
    names: tuple[tuple[str, str], ...]  # (folded, as written): every name the class answers to


class LabelSearch:
    """Every label a person may give, with every name it answers to: the model card's label in each of its
    languages, the taxonomy table's vernacular names (all of its languages) and scientific name."""

    def __init__(self, classes: ClassTable, lang: str):
        self.reader = LabelReader(classes, bird=True)
        self.choices: list[_Choice] = []
        for key in label_choices(classes):
            written = [label_text(classes, key, lang), key,
                       *(label_text(classes, key, other) for other in classes.names)]
            taxon = taxon_for_key(key, classes.bird_class)
            if taxon is not None and not key.endswith(" undefined"):
                written += [taxon.scientific_name, *taxon.vernacular.values()]
            names: dict[str, str] = {}
            for name in written:
                names.setdefault(fold(name), " ".join(name.split()))
            self.choices.append(_Choice(key, label_text(classes, key, lang), tuple(names.items())))

    def search(self, text: str) -> list[dict[str, Any]]:
        """The labels `text` names, best first: the class the one label rule reads it as (a scientific name of
        any taxon the class holds, "Meles meles"), then a name equal to it, then a name it begins, then a word
        of a name it begins; `name`: the name that matched, when the page's label is another. [] is "no match"."""
        query = fold(text[:MAX_QUERY])
        if not query:
            return [{"key": c.key, "label": c.label, "name": ""} for c in self.choices]
        read = self.reader.key(text[:MAX_QUERY])
        ranked = []
        for order, choice in enumerate(self.choices):
            best = None
            for folded, written in choice.names:
                if folded == query:
                    rank = 1
                elif folded.startswith(query):
                    rank = 2
                elif any(word.startswith(query) for word in _WORD.split(folded)):
                    rank = 3
                else:
                    continue
                if best is None or rank < best[0]:
                    best = (rank, written)
            if choice.key == read:
                best = (0, text.strip()) if best is None else (0, best[1])
            if best is not None:
                ranked.append((best[0], order, choice, best[1]))
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [{"key": c.key, "label": c.label, "name": "" if fold(name) == fold(c.label) else name}
                for _, _, c, name in ranked]
