"""`deepfaune models quantize` and `deepfaune run --fast` on small stand-ins: int8 files, own fingerprint."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.cli import main
from deepfaune_plugin.models.installed import ModelFileError, InstalledModels
from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend
from imagegen import RED, make_jpeg

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def fast_models(standin_models: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fast") / "models"
    shutil.copytree(standin_models, root)
    assert main(["models", "quantize", "--models-dir", str(root), "--version", "1.4"]) == 0
    return root


def test_quantize_registers_int8_variants_beside_the_defaults(fast_models: Path):
    installed = InstalledModels(fast_models)
    entry = installed.manifest["versions"]["1.4"]
    assert set(entry["detectors_int8"]) == {"DF", "MDS"}
    for mode in ("DF", "MDS"):
        int8 = installed.file_name("1.4", "detector_int8", mode=mode)
        assert int8.endswith("-int8.onnx") and int8 != installed.file_name("1.4", "detector", mode=mode)
        info = installed.file_info(int8)
        assert info["quantization"]["format"] == "QDQ" and info["standin"] is True
        assert info["drift"]["images"] == 4
    assert entry["classifier_int8"].endswith("-int8.onnx")
    assert installed.verify() == []
    # a second call keeps what is there
    assert main(["models", "quantize", "--models-dir", str(fast_models)]) == 0


def test_models_list_shows_every_int8_file(fast_models: Path, capsys):
    assert main(["models", "list", "--models-dir", str(fast_models)]) == 0
    listed = capsys.readouterr().out
    installed = InstalledModels(fast_models)
    for mode in ("DF", "MDS"):
        assert f"detector {mode} int8" in listed and installed.file_name("1.4", "detector_int8", mode=mode) in listed
    assert installed.manifest["versions"]["1.4"]["classifier_int8"] in listed


def test_fast_has_its_own_fingerprint_and_files(fast_models: Path):
    backend = DeepFauneBackend()
    fp32 = backend.describe(RunSettings(models_dir=fast_models))
    fast = backend.describe(RunSettings(models_dir=fast_models, fast=True))
    assert fp32.fingerprint != fast.fingerprint
    assert fast.info["fast"] is True and "fast" not in fp32.info
    assert all(f["file"].endswith("-int8.onnx") for f in fast.info["files"].values())
    assert not any(f["file"].endswith("-int8.onnx") for f in fp32.info["files"].values())


def test_fast_without_quantized_models_says_how_to_make_them(standin_models: Path):
    with pytest.raises(ModelFileError, match="deepfaune models quantize"):
        DeepFauneBackend().describe(RunSettings(models_dir=standin_models, fast=True))


def test_run_fast_finds_the_same_animals(fast_models: Path, tmp_path: Path):
    src = tmp_path / "src"
    make_jpeg(src / "animal.jpg", blobs=[(RED, (300, 200, 600, 450))], seed=1)
    make_jpeg(src / "empty.jpg", seed=2)
    tables = {}
    for flag in ([], ["--fast"]):
        out = tmp_path / f"out{len(flag)}.csv"
        assert main(["run", str(src), "--models-dir", str(fast_models), "--output", str(out), "-q", "--no-store",
                     *flag]) == 0
        tables[bool(flag)] = pd.read_csv(out, keep_default_na=False).set_index("filename")
    for table in tables.values():
        assert table.loc["animal.jpg", "count"] == 1 and table.loc["empty.jpg", "predictionbase"] == "vide"
    box = ["bbox_x", "bbox_y", "bbox_width", "bbox_height"]
    (ax, ay, aw, ah), (bx, by, bw, bh) = (tables[k].loc["animal.jpg", box].astype(float) for k in (True, False))
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    assert inter / (aw * ah + bw * bh - inter) > 0.8  # the same blob, the box a little off (int8)


def test_fast_runs_without_the_onnxruntime_arena(fast_models: Path):
    """--fast keeps to its memory budget: no CPU memory arena (160 MB less peak RSS, measured); fp32 keeps it."""
    from deepfaune_plugin.engine.onnx_models import session_options

    assert session_options(1).enable_cpu_mem_arena is True
    assert session_options(1, low_memory=True).enable_cpu_mem_arena is False
    fast = DeepFauneBackend().open(RunSettings(models_dir=fast_models, fast=True, detector_mode="DF"))
    plain = DeepFauneBackend().open(RunSettings(models_dir=fast_models, detector_mode="DF"))
    assert (fast.low_memory, plain.low_memory) == (True, False)
