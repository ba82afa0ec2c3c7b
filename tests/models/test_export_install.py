"""`deepfaune models install` end to end against a local HTTP server serving official-format checkpoints.

The checkpoints are random and shrunk (a 1-block DINOv2-layout ViT, YOLOv8n-sized detectors) so
that the whole install runs in seconds; the code path is the one real weights take.
"""
from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
try:  # offline, no auto-install, quiet: as the exporter imports it
    __import__("deepfaune_plugin.models.export.deps", fromlist=["x"]).require_ultralytics()
except Exception as exc:  # ExportDepsMissing
    pytest.skip(str(exc), allow_module_level=True)

from test_download import FileServer  # noqa: E402

from deepfaune_plugin import cli  # noqa: E402
from deepfaune_plugin.testing import run_cli  # noqa: E402
from deepfaune_plugin.errors import DeepfauneError  # noqa: E402
from deepfaune_plugin.models.download import DownloadError  # noqa: E402
from deepfaune_plugin.engine.onnx_models import OnnxClassifier, OnnxDetector  # noqa: E402
from deepfaune_plugin.models.cards import load_card  # noqa: E402
import official_checkpoints as fakes  # noqa: E402
from deepfaune_plugin.models.export import deps  # noqa: E402
from deepfaune_plugin.models.export.checkpoint import CheckpointError  # noqa: E402
from deepfaune_plugin.models.export.install import install, official_files  # noqa: E402
from deepfaune_plugin.models.export.probes import scene  # noqa: E402
from deepfaune_plugin.models.installed import MANIFEST_NAME, InstalledModels  # noqa: E402

SMALL_VIT = {"depth": 1, "embed_dim": 128, "num_heads": 2}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """DeepFaune 1.4's files, random and small, under their official names; plus two probe photos."""
    card = load_card("1.4")
    www = tmp_path_factory.mktemp("www")
    c = card.classifier
    fakes.write_classifier_checkpoint(www / c.file, c.backbone, c.num_classes, c.crop_size, backbone_kwargs=SMALL_VIT)
    fakes.write_bird_head(www / card.bird_head.file, dim=SMALL_VIT["embed_dim"], hidden=256)
    for name, spec in card.detectors.items():  # MegaDetector v1000 sorrel is a YOLO11
        cfg = "yolov8n.yaml" if name == "DF" else "yolo11n.yaml"
        fakes.write_detector_checkpoint(www / spec.file, cfg, seed=0, score_bias=-5.0)
    probes = tmp_path_factory.mktemp("probes")
    for i, (h, w) in enumerate(((480, 640), (600, 450))):
        cv2.imwrite(str(probes / f"p{i}.jpg"), scene(h, w, 20 + i))
    sized = dataclasses.replace(card, classifier=dataclasses.replace(c, size_bytes=(www / c.file).stat().st_size))
    return sized, www, probes


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


@pytest.fixture(scope="module")
def installed(official, tmp_path_factory, monkeypatch_module):
    """`deepfaune models install 1.4` from the local server, whose connection drops once mid-file."""
    card, www, probes = official
    root = tmp_path_factory.mktemp("install")
    models, downloads = root / "models", root / "downloads"
    from deepfaune_plugin.models.export import install as install_module

    shrunk = functools.partial(install_module.install, card=card, backbone_kwargs=SMALL_VIT, progress=False,
                               log=lambda m: None)
    monkeypatch_module.setattr(install_module, "install", shrunk)  # the real card's ViT-L would not fit these files
    with FileServer(www) as server:
        cut = card.classifier.size_bytes // 2
        server.drop_once[card.classifier.file] = cut
        code = cli.main(["models", "install", "1.4", "--base-url", server.url, "--models-dir", str(models),
                         "--download-dir", str(downloads), "--probes", str(probes), "--converter", "torch"])
    ranges = [r for name, r in server.requests if name == card.classifier.file]
    return code, models, downloads, ranges, cut


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_install_resumes_an_interrupted_download_and_writes_the_manifest(official, installed):
    card, www, _ = official
    code, models, downloads, ranges, cut = installed
    assert code == 0
    assert ranges == [None, f"bytes={cut}-"]
    fast = ["deepfaune-vit_large_patch14_dinov2.lvd142m.v4-fp16.onnx", "deepfaune-yolov8s_960-int8.onnx",
            "deepfaune-yolov8s_960-fp16.onnx", "md_v1000.0.0-sorrel-int8.onnx", "md_v1000.0.0-sorrel-fp16.onnx"]
    assert _leftovers(models) == sorted([MANIFEST_NAME, card.classifier.onnx, "deepfaune-vit_large_patch14_dinov2"
                                         ".lvd142m.v4-int8.onnx", "deepfaune-yolov8s_960.onnx", "md_v1000.0.0-sorrel.onnx",
                                         *fast])  # issue 17: the --fast variants are made at install
    assert not downloads.exists()  # downloads are removed once exported

    store = InstalledModels(models)
    assert store.verify() == []
    entry = store.manifest["versions"]["1.4"]
    assert entry == {"classifier": card.classifier.onnx, "classifier_int8": card.classifier.onnx[:-5] + "-int8.onnx",
                     "detectors": {"DF": "deepfaune-yolov8s_960.onnx", "MDS": "md_v1000.0.0-sorrel.onnx"},
                     "classifier_fp16": card.classifier.onnx[:-5] + "-fp16.onnx",
                     "detectors_int8": {"DF": "deepfaune-yolov8s_960-int8.onnx", "MDS": "md_v1000.0.0-sorrel-int8.onnx"},
                     "detectors_fp16": {"DF": "deepfaune-yolov8s_960-fp16.onnx", "MDS": "md_v1000.0.0-sorrel-fp16.onnx"}}
    cls = store.file_info(card.classifier.onnx)
    assert cls["source"] == "export" and cls["standin"] is False and cls["version"] == "1.4"
    assert cls["parity"]["ok"] and cls["parity"]["max_abs_logit"] <= 1e-4 and cls["parity"]["max_abs_bird_logit"] <= 1e-4
    assert cls["exported_from"]["bytes"] == (www / card.classifier.file).stat().st_size
    assert cls["position_table"] == "37x37 resampled to 13x13 (bicubic, antialias) and baked in"
    assert set(cls["tools"]) >= {"torch", "timm", "ultralytics", "onnxruntime"}
    int8 = store.file_info(entry["classifier_int8"])
    assert int8["default"] is False and int8["drift"]["probes"] == 8 and int8["drift"]["max_abs_logit"] > 0
    for name in entry["detectors"].values():
        det = store.file_info(name)
        assert det["parity"]["ok"] and det["parity"]["images"] == 2 and det["parity"]["min_iou"] >= 0.999
        assert det["parity"]["boxes"] > 0
    assert store.file_info("md_v1000.0.0-sorrel.onnx")["architecture"] == "yolo11n"

    # the installed files run in the engine
    logits, bird = OnnxClassifier(store.file_for("1.4", "classifier"))(np.zeros((2, 3, 182, 182), np.float32))
    assert logits.shape == (2, 38) and bird.shape == (2, 8)
    assert isinstance(OnnxDetector(store.file_for("1.4", "detector", "DF"))(scene(300, 400, 1)), list)


def test_list_and_verify(official, installed, tmp_path, capsys):
    card, _, _ = official
    _, installed_models, _, _, _ = installed
    models = tmp_path / "models"
    shutil.copytree(installed_models, models)
    assert cli.main(["models", "list", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "1.4  installed  weights CC-BY-SA-4.0" in out and "1.5  available" in out
    assert f"classifier: {card.classifier.onnx}" in out and "parity max|dlogit|" in out
    assert "int8 drift max|dlogit|" in out and "parity min IoU 0.99" in out
    assert cli.main(["models", "verify", "--models-dir", str(models)]) == 0
    assert "all 9 model files" in capsys.readouterr().out  # 4 models, their int8 and fp16 variants
    with open(models / "deepfaune-yolov8s_960.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    assert cli.main(["models", "verify", "--models-dir", str(models)]) == 1
    assert "deepfaune-yolov8s_960.onnx does not match the manifest" in capsys.readouterr().err


def test_a_file_of_the_wrong_size_is_refused_and_nothing_is_installed(official, tmp_path):
    card, www, probes = official
    models = tmp_path / "models"
    with FileServer(www) as server:
        server.lie_size[card.classifier.file] = card.classifier.size_bytes + 1000
        with pytest.raises(DownloadError, match="the model card expects"):
            install("1.4", models, card=card, base_url=server.url, download_dir=tmp_path / "dl",
                    probe_dir=probes, backbone_kwargs=SMALL_VIT, progress=False, log=lambda m: None)
    assert _leftovers(models) == []
    assert not list((tmp_path / "dl").glob("*.part"))


def test_a_corrupted_checkpoint_is_refused_and_nothing_half_written_remains(official, tmp_path):
    card, www, probes = official
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in official_files(card):
        (bad / f.name).write_bytes((www / f.name).read_bytes())
    data = bytearray((bad / card.classifier.file).read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = b"\xff" * 4096  # same size, damaged inside
    (bad / card.classifier.file).write_bytes(bytes(data))
    models = tmp_path / "models"
    models.mkdir()
    (models / "keep.txt").write_text("the user's own file")
    for converter, why in (("torch", "non-finite"), ("torchfree", "damaged .*Bad CRC-32")):
        with pytest.raises(CheckpointError, match=why):  # torch reads the bad bytes; the zip's CRC catches them
            install("1.4", models, card=card, source_dir=bad, probe_dir=probes, backbone_kwargs=SMALL_VIT,
                    progress=False, log=lambda m: None, converter=converter)
        assert _leftovers(models) == ["keep.txt"]  # no staging folder, no ONNX, no manifest
        assert (bad / card.classifier.file).exists()  # --from files are never deleted


def test_from_dir_with_a_missing_file_names_it(official, tmp_path):
    card, www, _ = official
    with pytest.raises(Exception, match=card.bird_head.file):
        install("1.4", tmp_path / "m", card=card, source_dir=tmp_path, log=lambda m: None)


def test_cli_without_the_export_extra_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    def missing(name):
        raise deps._missing(name, ImportError(f"No module named '{name}'"))

    monkeypatch.setattr(deps, "require", missing)
    code = cli.main(["models", "install", "1.4", "--models-dir", str(tmp_path / "m"), "--converter", "torch"])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'deepfaune-plugin[export]'" in err and "torch" in err
    assert not (tmp_path / "m").exists()


# --- issue 17: the default install needs no torch -----------------------------------------------------------------
BLOCK_TORCH = """
import dataclasses, importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "timm", "ultralytics"}:
            raise ImportError(f"No module named {name!r} (blocked: this run proves the path needs no torch)")
sys.meta_path.insert(0, NoTorch())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch is importable")
from deepfaune_plugin import cli
from deepfaune_plugin.models.export import install as install_module
real = install_module.load_card
def sized(version):  # the shrunk random classifier is not the real file's size
    card = real(version)
    return dataclasses.replace(card, classifier=dataclasses.replace(card.classifier, size_bytes=int(sys.argv[1])))
install_module.load_card = sized
argv = sys.argv[2:]
split = argv.index("--then")
code = cli.main(argv[:split]) if split else 0
if code == 0:
    code = cli.main(argv[split + 1:])
print("modules:", sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "timm", "ultralytics"}))
print("package:", cli.__file__)
raise SystemExit(code)
"""


def test_install_and_run_with_torch_unimportable(official, tmp_path):
    """`deepfaune models install 1.4 --from DIR` then `deepfaune run`, in a process where torch, timm and
    ultralytics cannot be imported (asserted there; in CI that process is a fresh venv with `pip install .`
    only, $DEEPFAUNE_PLAIN_PYTHON): a verified models folder and a result table."""
    import os
    import subprocess
    import sys

    card, www, probes = official
    models, photos = tmp_path / "models", tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f"IMG_{i:04d}.JPG"), scene(600, 800, 40 + i))
    python = os.environ.get("DEEPFAUNE_PLAIN_PYTHON") or sys.executable  # CI: a venv with `pip install .` only
    done = subprocess.run(
        [python, "-c", BLOCK_TORCH, str(card.classifier.size_bytes),
         "models", "install", "1.4", "--from", str(www), "--models-dir", str(models), "--probes", str(probes),
         "--then", "run", str(photos), "--models-dir", str(models), "-q", "--no-store"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # not the repo: the installed package
    assert done.returncode == 0, done.stderr[-3000:]
    assert "modules: []" in done.stdout
    if python != sys.executable:  # the plain venv's own copy ran, not this checkout
        assert "site-packages" in done.stdout.split("package:")[1], done.stdout
    assert "parity was not measured here" in done.stderr and "installed DeepFaune 1.4" in done.stderr
    store = InstalledModels(models)
    assert store.verify() == []
    cls = store.file_info(card.classifier.onnx)
    assert cls["converter"] == "torchfree" and cls["parity"]["measured"] is False
    assert cls["tools"]["converter"] == "torchfree" and "torch" not in cls["tools"]
    assert cls["position_table"] == "37x37 resampled to 13x13 (bicubic, antialias) and baked in"
    assert store.file_info(card.classifier.onnx[:-5] + "-int8.onnx")["drift"]["probes"] == 8  # int8 made at install
    assert set(store.manifest["versions"]["1.4"]["detectors_int8"]) == {"DF", "MDS"}  # and what --fast needs
    assert {store.file_info(n)["converter"] for n in store.manifest["versions"]["1.4"]["detectors"].values()} == \
        {"torchfree"}
    table = (photos / "deepfaune.csv").read_text(encoding="utf-8")
    assert table.count("IMG_") == 3
    listed = run_cli(["models", "list", "--models-dir", models])
    assert listed.code == 0 and "converted torch-free; parity not measured here (no torch)" in listed.stdout
    fast = subprocess.run([python, "-c", BLOCK_TORCH, str(card.classifier.size_bytes), "--then", "run",
                           str(photos), "--models-dir", str(models), "-q", "--no-store", "--fast",
                           "--output", str(tmp_path / "fast.csv")], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert (tmp_path / "fast.csv").read_text(encoding="utf-8").count("IMG_") == 3, fast.stderr[-2000:]


def test_torch_free_install_measures_parity_when_torch_is_there(official, tmp_path):
    card, www, probes = official
    models = tmp_path / "models"
    install("1.4", models, card=card, source_dir=www, probe_dir=probes, backbone_kwargs=SMALL_VIT, progress=False,
            log=lambda m: None)
    store = InstalledModels(models)
    assert store.verify() == []
    cls = store.file_info(card.classifier.onnx)
    assert cls["converter"] == "torchfree" and cls["parity"]["against"] == "timm" and cls["parity"]["ok"]
    assert cls["parity"]["max_abs_logit"] <= 1e-4 and cls["parity"]["max_abs_bird_logit"] <= 1e-4
    for name in store.manifest["versions"]["1.4"]["detectors"].values():
        det = store.file_info(name)
        assert det["parity"]["against"] == "ultralytics" and det["parity"]["ok"] and det["parity"]["boxes"] > 0
        assert det["parity"]["min_iou"] >= 0.999 and det["parity_at_card_conf"]["ok"]



def test_torch_free_install_of_weights_that_fit_no_graph_names_the_file(official, tmp_path):
    import torch

    card, www, probes = official
    bad = tmp_path / "bad"
    shutil.copytree(www, bad)
    data = torch.load(str(bad / card.classifier.file), map_location="cpu", weights_only=False)
    data["state_dict"]["base_model.head.weight"] = torch.zeros(38, 64)  # the class token is 128 wide
    torch.save(data, str(bad / card.classifier.file))
    sized = dataclasses.replace(card, classifier=dataclasses.replace(
        card.classifier, size_bytes=(bad / card.classifier.file).stat().st_size))
    models = tmp_path / "models"
    with pytest.raises(DeepfauneError, match=rf"{card.classifier.file}: its weights do not form DeepFaune's "
                                             rf"{card.classifier.backbone}"):
        install("1.4", models, card=sized, source_dir=bad, probe_dir=probes, progress=False, log=lambda m: None)
    assert _leftovers(models) == []
