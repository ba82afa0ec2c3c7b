"""Reading DeepFaune's classifier checkpoint format without torchvision and without running pickled code."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import official_checkpoints as fakes  # noqa: E402
from deepfaune_plugin.models.export.checkpoint import (  # noqa: E402
    CheckpointError, InertGlobal, load_bird_head, load_classifier_checkpoint, safe_load)

TINY = {"depth": 1, "embed_dim": 64, "num_heads": 2}  # a DINOv2-shaped ViT small enough for unit tests


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "classifier.pt"
    return fakes.write_classifier_checkpoint(path, "vit_large_patch14_dinov2.lvd142m", 38, 182, backbone_kwargs=TINY)


def test_official_format_is_read_with_its_transform_described(checkpoint):
    ckpt = load_classifier_checkpoint(checkpoint)
    assert ckpt.backbone == "vit_large_patch14_dinov2.lvd142m" and ckpt.num_classes == 38
    assert ckpt.state_dict["pos_embed"].shape == (1, 1 + 37 * 37, 64)  # DINOv2's 518 px table
    assert not any(k.startswith("base_model.") for k in ckpt.state_dict)
    assert ckpt.state_dict["head.weight"].shape == (38, 64)
    assert ckpt.transform == ("Compose([Resize(size=(182, 182), interpolation=InterpolationMode('bicubic'), "
                              "max_size=None, antialias=None), ToTensor(), "
                              "Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])")
    assert ckpt.args == {"backbone": "vit_large_patch14_dinov2.lvd142m", "num_classes": 38, "lr": 1e-4, "epochs": 1}


def test_the_file_really_names_torchvision_classes(checkpoint):
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))
    assert "torchvision.transforms.transforms.Compose" in names
    assert "torchvision.transforms.functional.InterpolationMode" in names
    with pytest.raises(Exception, match="torchvision"):  # plain weights_only loading refuses it
        torch.load(str(checkpoint), weights_only=True)


def test_loading_never_imports_torchvision(checkpoint):
    code = ("import sys; from deepfaune_plugin.models.export.checkpoint import load_classifier_checkpoint; "
            f"c = load_classifier_checkpoint({str(checkpoint)!r}); "
            "print(c.num_classes, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["38", "False"]


CALLS: list[str] = []


def record_call(text: str) -> str:
    CALLS.append(text)
    return text


class _Payload:
    """Unpickles as a call to `fn(text)`: what a hostile checkpoint would hide."""

    def __init__(self, fn, text: str):
        self.fn, self.text = fn, text

    def __reduce__(self):
        return (self.fn, (self.text,))


def test_pickled_calls_are_never_run(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"args": {"backbone": "x", "num_classes": 1}, "state_dict": {},
                "transform": _Payload(record_call, "ran")}, path)
    data = safe_load(path)
    assert CALLS == []
    assert isinstance(data["transform"], InertGlobal)
    assert data["transform"].qualified_name.endswith("record_call") and data["transform"].args == ("ran",)


def test_hostile_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pt"
    torch.save({"args": {}, "state_dict": {}, "transform": _Payload(os.system, f"touch {marker}")}, path)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        safe_load(path)
    assert not marker.exists()


def test_not_a_deepfaune_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="expected a dict with 'args' and 'state_dict'"):
        load_classifier_checkpoint(path)
    torch.save({"args": {"backbone": "b", "num_classes": 2}, "state_dict": {"head.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="keys outside 'base_model.': head.weight"):
        load_classifier_checkpoint(path)
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a zip" * 100)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_classifier_checkpoint(tmp_path / "garbage.pt")


def test_bird_head_file(tmp_path):
    path = fakes.write_bird_head(tmp_path / "bird.pt", dim=64, hidden=32)
    state = load_bird_head(path)
    assert state["bird_model.0.weight"].shape == (32, 64) and state["bird_model.4.weight"].shape == (8, 32)
    assert int(state["bird_model.1.num_batches_tracked"]) == 1000
    with pytest.raises(CheckpointError, match="not a DeepFaune bird head"):
        load_bird_head(fakes.write_classifier_checkpoint(tmp_path / "c.pt", "vit_large_patch14_dinov2.lvd142m",
                                                         2, 182, backbone_kwargs=TINY))
