"""--device (issue 20): which onnxruntime provider runs the models, the fallback to the CPU and the one line
that says why, what the run record and `deepfaune plugins`/--version name, two onnxruntime installs.

Selection and fallback are tested here on the CPU with onnxruntime's real sessions (a provider that is offered
but does not start is what onnxruntime does when CUDA libraries are missing); the answers on a GPU are tested
where one is present, and skip with the reason elsewhere.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import onnxruntime as ort
import pandas as pd
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.cli import main
from deepfaune_plugin.distributed import _check_info
from deepfaune_plugin.engine import providers
from deepfaune_plugin.engine.providers import (CPU, DeviceChoice, DeviceError, RuntimeInstall, check_started,
                                               choose_device, requested_device, runtime_distributions)
from imagegen import GREEN, RED, make_jpeg
from test_fast import fast_models  # noqa: F401  (the fixture: stand-ins after `models quantize`)

CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
T0 = datetime(2024, 5, 3, 6, 0, 0)


@pytest.fixture
def season(tmp_path: Path) -> Path:
    src = tmp_path / "season"
    for i in range(3):
        make_jpeg(src / "cam1" / f"IMG_{i:04d}.JPG", date=T0 + timedelta(seconds=8 * i),
                  blobs=[(RED, (300, 200, 600, 450))], seed=i)
    make_jpeg(src / "cam2" / "IMG_0001.JPG", date=T0, blobs=[(GREEN, (100, 100, 300, 500))], seed=4)
    make_jpeg(src / "cam2" / "IMG_0002.JPG", date=T0 + timedelta(minutes=5), seed=5)
    return src


def _record(folder: Path) -> dict:
    """The newest run record written into `folder` (beside the output; named after it or not)."""
    records = sorted(folder.glob("*run*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert records, f"no run record in {folder}"
    return json.loads(records[-1].read_text())


def _run(season: Path, models: Path, out: Path, *extra: str) -> int:
    return main(["run", str(season), "--models-dir", str(models), "--output", str(out), "--no-store", "-q", *extra])


# ------------------------------------------------------------------ choosing


def test_auto_takes_the_gpu_provider_onnxruntime_offers():
    choice = choose_device("auto", [CUDA, CPU])
    assert (choice.device, choice.providers, choice.note) == ("cuda", (CUDA, CPU), "")


def test_auto_never_picks_openvino_on_its_own_and_says_why_it_stays_on_the_cpu():
    choice = choose_device("auto", [OPENVINO, CPU])
    assert choice.device == "cpu" and choice.providers == (CPU,)
    assert "offers no GPU provider (it has: OpenVINOExecutionProvider)" in choice.note
    assert "running on the CPU" in choice.note


def test_a_device_asked_by_name_and_not_installed_is_refused_with_the_extra_to_install():
    with pytest.raises(DeviceError) as err:
        choose_device("cuda", [CPU])
    assert "--device cuda" in str(err.value) and "deepfaune-plugin[gpu]" in str(err.value)
    assert "pip uninstall -y onnxruntime" in str(err.value)  # else the two would share one package folder
    assert choose_device("openvino", [OPENVINO, CPU]).providers == (OPENVINO, CPU)
    assert choose_device("cpu", [CUDA, CPU]).providers == (CPU,)


def test_the_option_beats_the_environment_and_unknown_names_say_where_they_came_from(monkeypatch):
    monkeypatch.setenv("DEEPFAUNE_DEVICE", "CPU")
    assert requested_device(None) == "cpu"
    assert requested_device("cuda") == "cuda"
    monkeypatch.setenv("DEEPFAUNE_DEVICE", "gpu")
    with pytest.raises(DeviceError, match="DEEPFAUNE_DEVICE: unknown device 'gpu'"):
        requested_device(None)
    monkeypatch.delenv("DEEPFAUNE_DEVICE")
    assert requested_device(None) == "auto"


def test_a_provider_that_does_not_start_falls_back_with_a_note_under_auto_and_is_an_error_by_name():
    auto = choose_device("auto", [CUDA, CPU])
    fallen = check_started(auto, [CPU], "classifier.onnx")
    assert fallen.providers == (CPU,) and fallen.device == "cpu"
    assert fallen.note.startswith("device auto: onnxruntime could not start CUDAExecutionProvider for "
                                  "classifier.onnx")
    assert check_started(auto, [CUDA, CPU], "x.onnx") is auto
    with pytest.raises(DeviceError, match="--device cuda: onnxruntime could not start"):
        check_started(choose_device("cuda", [CUDA, CPU]), [CPU], "x.onnx")


# ------------------------------------------------------------------ from the command line


def test_cpu_only_machine_gives_the_same_table_on_auto_and_cpu_and_says_so_once(season, standin_models, tmp_path,
                                                                                capsys, monkeypatch):
    if set(ort.get_available_providers()) & {CUDA, "DmlExecutionProvider", "CoreMLExecutionProvider"}:
        pytest.skip("this machine's onnxruntime offers a GPU provider: auto does not stay on the CPU")
    monkeypatch.delenv("DEEPFAUNE_DEVICE", raising=False)
    assert _run(season, standin_models, tmp_path / "auto.csv") == 0
    err = capsys.readouterr().err
    assert err.count("device auto: onnxruntime") == 1 and "running on the CPU" in err
    record = _record(tmp_path)
    assert record["backend_info"]["device"]["provider"] == CPU
    assert record["backend_info"]["device"]["requested"] == "auto"
    assert _run(season, standin_models, tmp_path / "cpu.csv", "--device", "cpu") == 0
    assert "device auto" not in capsys.readouterr().err
    auto, cpu = (pd.read_csv(tmp_path / f"{n}.csv", keep_default_na=False) for n in ("auto", "cpu"))
    pd.testing.assert_frame_equal(auto, cpu)
    assert _record(tmp_path)["backend_info"]["device"] == {
        "requested": "cpu", "device": "cpu", "provider": CPU}


def test_run_device_cuda_without_cuda_stops_before_anything_is_written(season, standin_models, tmp_path, capsys):
    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    before = sorted(p.name for p in season.rglob("*"))
    assert _run(season, standin_models, tmp_path / "x.csv", "--device", "cuda") == 1
    err = capsys.readouterr().err
    assert "--device cuda: onnxruntime" in err and "deepfaune-plugin[gpu]" in err
    assert not (tmp_path / "x.csv").exists() and sorted(p.name for p in season.rglob("*")) == before


def test_a_gpu_provider_that_cannot_start_runs_on_the_cpu_with_one_line(season, standin_models, tmp_path, capsys,
                                                                        monkeypatch):
    """What a laptop with onnxruntime-gpu but no CUDA libraries sees: onnxruntime offers CUDA, the session
    starts on the CPU; the run says so once and the record names the CPU."""
    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the provider would start")
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.delenv("DEEPFAUNE_DEVICE", raising=False)
    assert _run(season, standin_models, tmp_path / "fallback.csv") == 0
    err = capsys.readouterr().err
    assert err.count("could not start CUDAExecutionProvider") == 1 and "running on the CPU instead" in err
    info = _record(tmp_path)["backend_info"]["device"]
    assert info["provider"] == CPU and info["requested"] == "auto" and "could not start" in info["note"]
    assert _run(season, standin_models, tmp_path / "cpu.csv", "--device", "cpu") == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fallback.csv", keep_default_na=False),
                                  pd.read_csv(tmp_path / "cpu.csv", keep_default_na=False))


def test_version_and_plugins_name_the_runtime_and_what_auto_uses(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("deepfaune-plugin ")
    assert lines[1].startswith(f"onnxruntime {ort.__version__} (providers: ") and "--device auto uses " in lines[1]
    assert main(["plugins"]) == 0
    assert "runtime  onnxruntime" in capsys.readouterr().out


class _Dist:
    def __init__(self, name: str, version: str):
        self.metadata, self.version = {"Name": name}, version


def test_two_onnxruntime_distributions_are_detected_with_the_fix():
    found = runtime_distributions([_Dist("onnxruntime", "1.32.0"), _Dist("pandas", "3"),
                                   _Dist("onnxruntime_gpu", "1.32.0")])
    assert found == (("onnxruntime", "1.32.0"), ("onnxruntime-gpu", "1.32.0"))
    conflict = RuntimeInstall("1.32.0", (CPU,), found).conflict
    assert "installed 2 times (onnxruntime 1.32.0, onnxruntime-gpu 1.32.0)" in conflict
    assert conflict.endswith("pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    assert RuntimeInstall("1.32.0", (CPU,), found[:1]).conflict == ""
    assert runtime_distributions()  # this environment has one, whichever it is


def test_cluster_workers_on_different_devices_are_not_taken_for_other_models():
    class Shard:
        worker = "w2"
        info = {"model_version": "1.4", "files": {"a": 1}, "device": {"provider": CUDA}}
    _check_info({"model_version": "1.4", "files": {"a": 1}, "device": {"provider": CPU}}, Shard(), None)
    Shard.info = {**Shard.info, "files": {"a": 2}}
    with pytest.raises(Exception, match="files differ"):
        _check_info({"model_version": "1.4", "files": {"a": 1}}, Shard(), None)


# ------------------------------------------------------------------ answers on an accelerator


@pytest.mark.parametrize("device,provider", [("cuda", CUDA), ("openvino", OPENVINO), ("directml",
                                                                                      "DmlExecutionProvider")])
def test_every_provider_gives_the_cpu_labels_and_scores_within_float_tolerance(device, provider, season,
                                                                               standin_models, tmp_path):
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} is not offered by this onnxruntime ({', '.join(ort.get_available_providers())})")
    from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend
    from deepfaune_plugin.types import MediaItem

    items = [MediaItem(path=p, relpath=p.relative_to(season).as_posix(), group=p.parent.name)
             for p in sorted(season.rglob("*.JPG"))]
    runs = {}
    for name in ("cpu", device):
        predictor = DeepFauneBackend().open(RunSettings(models_dir=standin_models, device=name))
        assert predictor.info["device"]["provider"] == (CPU if name == "cpu" else provider)
        runs[name] = list(predictor.predict(iter(items)))
        predictor.close()
    for a, b in zip(runs["cpu"], runs[device]):
        assert [d.category for d in a.detections] == [d.category for d in b.detections]
        assert a.selected == b.selected
        if a.logits is not None:
            assert abs(a.logits - b.logits).max() < 1e-3 and a.logits.argmax() == b.logits.argmax()


def test_device_choice_for_the_cpu_has_no_note():
    assert DeviceChoice("cpu", "cpu", (CPU,)).note == "" and choose_device("cpu").provider == CPU


def test_quantize_makes_fp16_variants_with_their_drift_beside_the_int8_ones(fast_models):
    manifest = json.loads((fast_models / "deepfaune-models.json").read_text())
    entry = manifest["versions"]["1.4"]
    assert entry["classifier_fp16"].endswith("-fp16.onnx") and sorted(entry["detectors_fp16"]) == ["DF", "MDS"]
    meta = manifest["files"][entry["classifier_fp16"]]
    assert meta["source"] == "export-fp16" and meta["default"] is False
    assert meta["derived_from"] == entry["classifier"]
    assert 0 < meta["drift"]["max_abs_logit"] < 0.1 and meta["drift"]["top1_agree"] == 1.0
    assert manifest["files"][entry["detectors_fp16"]["DF"]]["drift"]["same_box_count"] >= 1
    assert main(["models", "verify", "--models-dir", str(fast_models)]) == 0  # the new files are hashed too


def test_fast_runs_int8_on_the_cpu_and_fp16_on_a_gpu(fast_models, monkeypatch):
    from deepfaune_plugin.hooks.deepfaune import ModelPlan

    entry = json.loads((fast_models / "deepfaune-models.json").read_text())["versions"]["1.4"]
    cpu = ModelPlan.for_settings(RunSettings(models_dir=fast_models, fast=True, device="cpu"))
    assert (cpu.classifier, cpu.detectors["DF"], cpu.variant) == (entry["classifier_int8"],
                                                                   entry["detectors_int8"]["DF"], "int8")
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [CUDA, CPU])
    gpu = ModelPlan.for_settings(RunSettings(models_dir=fast_models, fast=True, device="auto"))
    assert (gpu.classifier, gpu.detectors["DF"], gpu.variant) == (entry["classifier_fp16"],
                                                                   entry["detectors_fp16"]["DF"], "fp16")
    assert gpu.fingerprint() != cpu.fingerprint()  # stored int8 outputs are never served for an fp16 run
    assert ModelPlan.for_settings(RunSettings(models_dir=fast_models, device="auto")).variant == ""


def test_fast_fp16_models_give_the_fp32_labels_on_the_fixtures(season, fast_models, tmp_path, capsys, monkeypatch):
    """What a GPU's --fast runs, here on the CPU provider (onnxruntime's fallback, which runs fp16 graphs too):
    the same labels as fp32, and the record names the fp16 files."""
    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the GPU test below covers it")
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [CUDA, CPU])
    assert _run(season, fast_models, tmp_path / "fp16.csv", "--fast") == 0
    assert "could not start CUDAExecutionProvider" in capsys.readouterr().err
    record = _record(tmp_path)
    assert record["backend_info"]["variant"] == "fp16"
    files = record["models"]["files"]
    assert sorted(files) == ["classifier", "detector-DF", "detector-MDS"]
    assert all(f["file"].endswith("-fp16.onnx") for f in files.values())
    monkeypatch.undo()
    assert _run(season, fast_models, tmp_path / "fp32.csv", "--device", "cpu") == 0
    fp16, fp32 = (pd.read_csv(tmp_path / f"{n}.csv", keep_default_na=False).set_index("filename")
                  for n in ("fp16", "fp32"))
    assert fp16["prediction"].tolist() == fp32["prediction"].tolist()
    assert (fp16["score"] - fp32["score"]).abs().max() <= 0.011  # truncated to 2 decimals: one step at most


def test_decoding_runs_on_one_thread_for_the_cpu_and_several_ahead_of_a_gpu(monkeypatch):
    from deepfaune_plugin.hooks import deepfaune as deepfaune_backend

    monkeypatch.setattr(deepfaune_backend.os, "cpu_count", lambda: 16)
    assert deepfaune_backend.decode_workers(choose_device("cpu")) == 1
    assert deepfaune_backend.decode_workers(choose_device("auto", [CUDA, CPU])) == 6
    monkeypatch.setattr(deepfaune_backend.os, "cpu_count", lambda: 2)
    assert deepfaune_backend.decode_workers(choose_device("auto", [CUDA, CPU])) == 2
