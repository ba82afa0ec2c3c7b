"""The DeepFaune backend opens exactly the files its ModelPlan names, each verified before use."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend, ModelPlan
from deepfaune_plugin.models.installed import ModelFileError


def test_predictor_loads_the_files_of_its_plan(standin_models: Path):
    settings = RunSettings(models_dir=standin_models, detector_mode="DFMDS", threads=1)
    plan = ModelPlan.for_settings(settings)
    predictor = DeepFauneBackend().open(settings)
    try:
        assert predictor.classifier.path == standin_models / plan.classifier
        assert {m: d.path for m, d in predictor._detectors.items()} == {
            m: standin_models / name for m, name in plan.detectors.items()}
        # the plan's info, and where the models run (known only once a session started: issue 20)
        assert {k: v for k, v in predictor.info.items() if k != "device"} == plan.info()
        assert predictor.info["device"]["provider"] == "CPUExecutionProvider"
    finally:
        predictor.close()


def test_a_detector_loaded_later_is_verified_at_open(standin_models: Path, tmp_path: Path):
    models = tmp_path / "models"
    shutil.copytree(standin_models, models)
    settings = RunSettings(models_dir=models, detector_mode="DFbsMDS", threads=1)
    mds = models / ModelPlan.for_settings(settings).detectors["MDS"]
    data = bytearray(mds.read_bytes())
    data[-1] ^= 1  # same size, one bit flipped
    mds.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"model file {re.escape(str(mds))} does not match the manifest"):
        DeepFauneBackend().open(settings)  # the MegaDetector backstop loads only when first needed
