from __future__ import annotations

import shutil

import pytest
import yaml

from deepfaune_plugin.models import cards as modelcards
from deepfaune_plugin.api import MODEL_DETECTOR_MODES
from deepfaune_plugin.models.cards import available_versions, load_card, version_key

BASE_LANGS = ["fr", "en", "it", "de", "es"]


def test_versions_in_order():
    assert available_versions() == ["1.3", "1.4", "1.5"]
    assert version_key("1.10") == (1, 10)
    assert sorted(["1.10", "1.9", "2.0", "1.4.1"], key=version_key) == ["1.4.1", "1.9", "1.10", "2.0"]


def test_unknown_version_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown DeepFaune model version '2\.0'; available: 1\.3, 1\.4, 1\.5"):
        load_card("2.0")


def test_card_1_4():
    card = load_card("1.4")
    table = card.class_table()
    assert table.version == "1.4"
    assert table.num_classes == 38
    assert table.languages == BASE_LANGS
    assert table.labels("en")[4] == "red deer"
    assert table.labels("fr")[4] == "cerf"
    assert table.labels("en")[28] == "bird" and table.bird_class == "bird"
    assert list(table.bird_names["en"]) == [
        "anseriform", "otherbird", "columbiform", "corvid", "galliform", "passerine", "piciform", "raptor"]
    assert (table.temperature_single, table.temperature_multi, table.temperature_bird) == (1.10, 1.04, 0.9)
    assert table.non_animal_label("undefined", "fr") == "indéfini"
    assert table.non_animal_label("empty", "de") == "Leer"
    assert card.bird_head.classes == 8 and card.bird_head.hidden == 2048
    assert card.bird_head.file == "deepfaune-vit_large_patch14_dinov2.lvd142m.v4-bird_head.pt"
    assert card.classifier.file == "deepfaune-vit_large_patch14_dinov2.lvd142m.v4.pt"
    assert (card.classifier.crop_size, card.classifier.backbone) == (182, "vit_large_patch14_dinov2.lvd142m")
    assert card.threshold == 0.8
    assert (card.licence_weights, card.licence_code) == ("CC-BY-SA-4.0", "CeCILL-2.1")
    assert card.citations == ("rigoudy2023", "dussert2024")
    df, mds = card.detector("DF"), card.detector("MDS")
    assert (df.file, df.size, df.conf) == ("deepfaune-yolov8s_960.pt", 960, 0.6)
    assert (mds.file, mds.size, mds.conf) == ("md_v1000.0.0-sorrel.pt", 960, 0.5)
    assert card.detector_modes == MODEL_DETECTOR_MODES
    assert card.default_detector_mode == "DFbsMDS"
    with pytest.raises(ValueError, match="no detector 'MDR'; choose one of DF, MDS"):
        card.detector("MDR")


def test_card_1_5():
    card = load_card("1.5")
    table = card.class_table()
    assert table.num_classes == 40
    assert table.languages == BASE_LANGS + ["no", "se", "pt"]  # 'no' stays a string, not YAML's False
    assert table.labels("no")[0] == "bison" and table.labels("pt")[36] == "raposa-do-ártico"
    assert table.non_animal_label("human", "se") == "människa"
    assert len(table.bird_names["pt"]) == 8
    assert card.classifier.crop_size == 224
    assert card.classifier.global_pool == "token"
    assert card.classifier.size_bytes == 1212611300
    assert card.classifier.architecture.patch_size == 16
    assert card.classifier.architecture.register_tokens == 4
    assert card.classifier.architecture.position == "rope"
    assert (table.temperature_single, table.temperature_multi, table.temperature_bird) == (1.12, 1.10, 1.0)
    assert card.default_detector_mode == "DFbsMDS"


def test_card_1_3_has_no_bird_head_and_only_the_deepfaune_detector():
    card = load_card("1.3")
    table = card.class_table()
    assert table.num_classes == 34 and table.languages == BASE_LANGS
    assert card.bird_head is None and table.bird_names is None
    assert list(card.detectors) == ["DF"]
    assert card.detector_modes == ("DF",) and card.default_detector_mode == "DF"
    assert card.temperatures.confirmed is False  # placeholder values, said so in the card


@pytest.mark.parametrize("version", ["1.3", "1.4", "1.5"])
def test_download_urls_follow_the_official_layout(version):
    card = load_card(version)
    base = f"https://pbil.univ-lyon1.fr/software/download/deepfaune/v{version}/"
    assert card.classifier.url == base + card.classifier.file
    assert card.detector("DF").url == base + "deepfaune-yolov8s_960.pt"
    if card.bird_head:
        assert card.bird_head.url == base + card.bird_head.file
    assert all(d.onnx.endswith(".onnx") for d in card.detectors.values())


@pytest.mark.parametrize("version", ["1.3", "1.4", "1.5"])
def test_labels_identical_to_the_shared_reference(shared, version):
    ref = yaml.safe_load((shared / "reference" / "deepfaune-classes.yaml").read_text(encoding="utf-8"))
    table = load_card(version).class_table()
    assert ref["versions"][version]["classes"] == table.num_classes
    for lang in table.languages:
        assert table.labels(lang) == ref["versions"][version]["labels"][lang]
        for kind in ("human", "vehicle", "empty", "undefined"):
            assert table.non_animal_label(kind, lang) == ref["non_animal"][kind][lang]
        if table.bird_names is not None:
            assert list(table.bird_names[lang]) == ref["bird_head"]["labels"][lang]
    assert (version in ref["bird_head"]["versions"]) == (table.bird_names is not None)


def test_card_with_a_wrong_label_count_is_rejected(tmp_path, monkeypatch):
    source = modelcards.cards_dir() / "deepfaune-1.4.yaml"
    text = source.read_text(encoding="utf-8").replace('"es": ["bisonte", ', '"es": [', 1)
    (tmp_path / "deepfaune-1.4.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setattr(modelcards, "cards_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=r"labels\[es\] has 37 labels, expected 38"):
        load_card("1.4")


def test_cards_dir_falls_back_to_the_repository(tmp_path, monkeypatch):
    # not installed: deepfaune_plugin.models is not importable, the repo's models/ is used
    assert (modelcards.cards_dir() / "deepfaune-1.4.yaml").is_file()
    copy = tmp_path / "deepfaune-1.4.yaml"
    shutil.copy(modelcards.cards_dir() / "deepfaune-1.4.yaml", copy)
    monkeypatch.setattr(modelcards, "cards_dir", lambda: tmp_path)
    assert available_versions() == ["1.4"]
