"""Issue 17 item 1: the torch-free checkpoint reader (models/convert/torchfree_pickle.py)."""
from __future__ import annotations

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.models.convert.torchfree_pickle import InertRecord, UnsafeCheckpointError, load


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_item17_1_os_system_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": _Evil(str(marker))}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refused.*system"):
        load(path)
    assert not marker.exists()


def test_item17_1_reads_torch_save_as_numpy_fp16_widened(tmp_path):
    torch = pytest.importorskip("torch")
    weights = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    state = collections.OrderedDict(w=weights, wt=weights.t(), h=weights.half(),
                                    p=torch.nn.Parameter(weights[1]), n=torch.tensor(5))
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": state, "args": {"backbone": "x", "num_classes": 3}}, path)
    data = load(path)
    got = data["state_dict"]
    np.testing.assert_array_equal(got["w"], weights.numpy())
    np.testing.assert_array_equal(got["wt"], weights.t().numpy())
    assert got["h"].dtype == np.float32
    np.testing.assert_allclose(got["h"], weights.half().float().numpy())
    np.testing.assert_array_equal(got["p"], weights[1].numpy())
    assert int(got["n"]) == 5 and data["args"]["num_classes"] == 3


def test_item17_1_foreign_class_is_an_inert_record(tmp_path):
    torch = pytest.importorskip("torch")
    import argparse
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(backbone="vit", num_classes=2), "w": torch.ones(2)}, path)
    data = load(path)
    assert isinstance(data["args"], InertRecord)
    assert data["args"].qualified_name == "argparse.Namespace"
    assert data["args"].state == {"backbone": "vit", "num_classes": 2}


def test_item17_1_not_a_zip_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DeepfauneError, match=r"junk\.pt is not a PyTorch checkpoint"):
        load(path)


@pytest.mark.slow
def test_item17_1_ultralytics_checkpoint_state_matches_torch(tmp_path):
    pytest.importorskip("ultralytics")
    import official_checkpoints as fakes
    from deepfaune_plugin.models.convert.torchfree_pickle import module_state_dict
    import torch
    path = fakes.write_detector_checkpoint(tmp_path / "det.pt")
    data = load(path)
    ours = module_state_dict(data["model"])
    theirs = torch.load(str(path), map_location="cpu", weights_only=False)["model"].float().state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value.numpy(), err_msg=key)
    assert data["model"].state["yaml"]["backbone"][0] == [-1, 1, "Conv", [64, 3, 2]]


def test_item17_1_reads_with_torch_not_importable(tmp_path):
    torch = pytest.importorskip("torch")
    import subprocess
    import sys
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": {"base_model.w": torch.full((2, 3), 0.5, dtype=torch.float16)}}, path)
    code = ("import sys; sys.modules['torch'] = None\n"
            "from deepfaune_plugin.models.convert.torchfree_pickle import load\n"
            f"w = load({str(path)!r})['state_dict']['base_model.w']\n"
            "print(w.dtype, w.shape, float(w.sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["float32", "(2,", "3)", "3.0"]


def test_item17_1_deepfaune_classifier_and_bird_head_match_torch_reader(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    import official_checkpoints as fakes
    from deepfaune_plugin.models.export.checkpoint import load_bird_head, load_classifier_checkpoint
    ck = fakes.write_classifier_checkpoint(tmp_path / "cls.pt", "vit_large_patch14_dinov2.lvd142m", 4, 182,
                                           backbone_kwargs={"embed_dim": 64, "depth": 1, "num_heads": 2})
    head = fakes.write_bird_head(tmp_path / "bird.pt", dim=64, hidden=16, classes=3)
    data, reference = load(ck), load_classifier_checkpoint(ck)
    assert data["args"]["num_classes"] == 4 and "Compose" in data["transform"].qualified_name
    for key, value in reference.state_dict.items():
        np.testing.assert_array_equal(data["state_dict"]["base_model." + key], value.numpy(), err_msg=key)
    bird, bird_ref = load(head), load_bird_head(head)
    assert set(bird) == set(bird_ref)
    for key, value in bird_ref.items():
        np.testing.assert_array_equal(bird[key], value.numpy(), err_msg=key)


def _tensor_pickle(size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A pickle written opcode by opcode (no torch): one float tensor viewing storage 0 with `size`/`stride`."""
    def text(s: str) -> bytes:
        return b"X" + len(s).to_bytes(4, "little") + s.encode()

    def ints(values) -> bytes:
        return b"(" + b"".join(b"K" + bytes([v]) for v in values) + b"t"

    pid = b"(" + text("storage") + text("FloatStorage") + text("0") + text("cpu") + b"K\x04" + b"t" + b"Q"
    return (b"\x80\x02" + b"ctorch._utils\n_rebuild_tensor_v2\n" + b"(" + pid + b"K\x00" + ints(size) + ints(stride)
            + b"tR.")


def test_a_tensor_view_outside_its_storage_is_refused_not_read(tmp_path):
    """The pickle names the view's shape and strides: taken as they are, as_strided would read past the
    storage's 4 floats into memory that is not the file's."""
    for name, size, stride, ok in (("fits", (2, 2), (2, 1), True), ("wide", (2, 2), (100, 1), False),
                                   ("long", (5,), (1,), False)):
        path = tmp_path / f"{name}.pt"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", _tensor_pickle(size, stride))
            z.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
        if ok:
            assert load(path).tolist() == [[0.0, 1.0], [2.0, 3.0]]
        else:
            with pytest.raises(DeepfauneError, match=rf"{name}\.pt: .*reaches outside its storage of 4 elements"):
                load(path)
