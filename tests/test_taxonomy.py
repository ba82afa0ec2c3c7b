"""The taxonomy table: every DeepFaune label resolves, ranks agree with names, labels agree with the cards."""
from __future__ import annotations

import re

import pytest

from deepfaune_plugin.models.cards import available_versions, load_card
from deepfaune_plugin.hooks.timelapse.md_json import timelapse_description
from deepfaune_plugin.taxonomy import RANKS, taxa, taxon, taxon_for_key

ISO3 = {"en": "eng", "fr": "fra", "de": "deu", "it": "ita", "es": "spa", "pt": "por", "no": "nor", "se": "swe"}
VERSIONS = ("1.3", "1.4", "1.5")


def test_the_table_is_exactly_the_classes_of_13_to_15_plus_birds_and_human():
    keys: set[str] = {"human"}
    for v in VERSIONS:
        ct = load_card(v).class_table()
        keys |= set(ct.labels("en"))
        if ct.bird_names:
            keys |= set(ct.bird_names["en"])
    assert set(taxa()) == keys
    assert len(keys) == 40 + 8 + 1


@pytest.mark.parametrize("version", VERSIONS)
def test_vernacular_names_are_deepfaunes_own_labels(version):
    ct = load_card(version).class_table()
    for lang in ct.languages:
        for en, label in zip(ct.labels("en"), ct.labels(lang)):
            assert taxon(en).vernacular[ISO3[lang]] == label, (version, en, lang)
        if ct.bird_names:
            for en, label in zip(ct.bird_names["en"], ct.bird_names[lang]):
                assert taxon(en).vernacular[ISO3[lang]] == label
    human = taxon("human").vernacular
    for lang, label in ct.non_animal["human"].items():
        assert human[ISO3[lang]] == label


def test_every_taxon_has_the_five_required_vernacular_languages():
    for t in taxa().values():
        assert {"eng", "fra", "deu", "ita", "spa"} <= set(t.vernacular), t.key
        assert t.vernacular["eng"] == t.key


def test_rank_agrees_with_the_name_and_the_classification():
    for t in taxa().values():
        assert t.rank in RANKS, t.key
        assert t.kingdom == "Animalia"
        below = RANKS[: RANKS.index(t.rank)]  # ranks finer than the taxon's own stay empty
        fields = {"species": t.species, "genus": t.genus, "family": t.family, "order": t.order, "class": t.class_}
        for r in below:
            assert fields[r] == "", (t.key, r)
        for r in RANKS[RANKS.index(t.rank):]:  # the taxon's own rank and every coarser one are filled
            assert fields[r], (t.key, r)
        if t.rank == "species":
            assert t.scientific_name == f"{t.genus} {t.species}"
            assert re.fullmatch(r"[A-Z][a-z]+ [a-z]+", t.scientific_name)
        else:
            assert t.scientific_name == fields[t.rank], t.key
            assert re.fullmatch(r"[A-Z][a-z]+", t.scientific_name)
        if t.family:
            assert t.family.endswith("idae"), t.key
        if t.class_ == "Aves" and t.order:
            assert t.order.endswith("iformes"), t.key


@pytest.mark.parametrize(
    "key, name, rank",
    [
        ("red deer", "Cervus elaphus", "species"),
        ("mustelid", "Mustelidae", "family"),
        ("bird", "Aves", "class"),
        ("micromammal", "Mammalia", "class"),
        ("equid", "Equidae", "family"),
        ("lagomorph", "Lagomorpha", "order"),
        ("goat", "Capra hircus", "species"),
        ("cow", "Bos taurus", "species"),
        ("dog", "Canis familiaris", "species"),
        ("cat", "Felis catus", "species"),
        ("wild boar", "Sus scrofa", "species"),
        ("human", "Homo sapiens", "species"),
        ("corvid", "Corvidae", "family"),
        ("raptor", "Aves", "class"),
        ("arctic fox", "Vulpes lagopus", "species"),
    ],
)
def test_reviewed_choices(key, name, rank):
    t = taxon(key)
    assert (t.scientific_name, t.rank) == (name, rank)


def test_look_alike_choices_are_documented():
    for key in ("cat", "micromammal", "ibex", "chamois", "lynx", "squirrel", "raptor"):
        assert taxon(key).note, key
    assert "silvestris" in taxon("cat").note


def test_unknown_key_raises_a_clear_keyerror():
    with pytest.raises(KeyError, match="'undefined' is not a DeepFaune class"):
        taxon("undefined")
    with pytest.raises(KeyError, match="English labels"):
        taxon("cerf")  # French label, not a key



@pytest.mark.parametrize("key, name", [
    ("red deer", "Cervus elaphus"),
    ("human", "Homo sapiens"),
    ("passerine", "Passeriformes"),       # a bird group's own key
    ("bird passerine", "Passeriformes"),  # the bird option's key: its group
    ("bird raptor", "Aves"),              # a group named at class rank
    ("bird undefined", "Aves"),           # no group above the threshold: the bird class
    ("bird", "Aves"),
    ("empty", None), ("vehicle", None), ("undefined", None), ("failed", None),
    ("red", None), ("fox cub", None),     # not keys, and not the bird option's
])
def test_taxon_for_key(key, name):
    found = taxon_for_key(key)
    assert (None if found is None else found.scientific_name) == name


def test_taxon_for_key_follows_the_bird_class():
    assert taxon_for_key("fox passerine", bird_class="fox").scientific_name == "Passeriformes"
    assert taxon_for_key("fox undefined", bird_class="fox").scientific_name == "Vulpes vulpes"
    assert taxon_for_key("bird undefined", bird_class="fox") is None

def test_timelapse_description_strings():
    red = timelapse_description(taxon("red deer"))
    guid, *rest = red.split(";")
    assert rest == ["mammalia", "artiodactyla", "cervidae", "cervus", "elaphus", "red deer"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", guid)
    assert guid == "676e3317-660d-5e96-b7cf-21860111858b"  # stable forever: Timelapse files keep it
    assert timelapse_description(taxon("mustelid")).split(";")[1:] == [
        "mammalia", "carnivora", "mustelidae", "", "", "mustelid"
    ]
    assert timelapse_description(taxon("bird")).split(";")[1:] == ["aves", "", "", "", "", "bird"]
    guids = [t.guid for t in taxa().values()]
    assert len(set(guids)) == len(guids)


def test_cards_listing_ignores_the_taxonomy_file():
    assert available_versions()[:3] == ["1.3", "1.4", "1.5"]


def test_the_api_serves_the_taxonomy_to_outside_plugins():
    """An outside host (plugins/deepfaune-wildlife-insights) writes ranks from the api, not a private module."""
    from deepfaune_plugin import api

    assert {"Taxon", "taxon_for_key"} <= set(api.__all__)
    fox = api.taxon_for_key("fox")
    assert isinstance(fox, api.Taxon)
    assert (fox.class_, fox.order, fox.family, fox.genus, fox.species) == \
        ("Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes")
    assert api.taxon_for_key("empty") is None
