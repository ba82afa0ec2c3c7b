"""Classifier export: random checkpoints in DeepFaune's format -> ONNX; onnxruntime against timm.

The references here are built straight from timm, as DeepFaune builds them, not through the
exporter's own code, so an exporter bug cannot hide in both sides.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from deepfaune_plugin.engine.onnx_models import OnnxClassifier  # noqa: E402
import official_checkpoints as fakes  # noqa: E402
from deepfaune_plugin.models.export.checkpoint import CheckpointError  # noqa: E402
from deepfaune_plugin.models.export.classifier import export_classifier  # noqa: E402
from deepfaune_plugin.models.export.probes import probe_crops  # noqa: E402
from deepfaune_plugin.models.export.quantize import quantize_classifier  # noqa: E402

DINOV2 = "vit_large_patch14_dinov2.lvd142m"
DINOV3 = "vit_large_patch16_dinov3.lvd1689m"
SHALLOW = {"depth": 1, "embed_dim": 192, "num_heads": 3}  # ViT-L's layout, narrower, 1 block instead of 24
WIDTH = SHALLOW["embed_dim"]


def timm_reference(checkpoint: Path, bird: Path | None, backbone_kwargs: dict, features: bool = False,
                   **create) -> callable:
    """DeepFaune's forward pass, written out with timm: logits and bird logits of a float32 batch (and, with
    `features`, the class token after the final norm: what the bird head reads)."""
    data = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    vit = timm.create_model(data["args"]["backbone"], pretrained=False, num_classes=data["args"]["num_classes"],
                            dynamic_img_size=True, **create, **backbone_kwargs).eval()
    vit.load_state_dict({k.removeprefix("base_model."): v for k, v in data["state_dict"].items()})
    head = None
    if bird is not None:
        state = {k.removeprefix("bird_model."): v for k, v in torch.load(str(bird)).items()}
        hidden, dim = state["0.weight"].shape
        head = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.GELU(),
                                   torch.nn.Dropout(0.0), torch.nn.Linear(hidden, 8)).eval()
        head.load_state_dict(state)

    @torch.no_grad()
    def run(x: np.ndarray):
        feats = vit.forward_features(torch.from_numpy(x))
        logits = vit.forward_head(feats).numpy()
        bird_logits = None if head is None else head(feats[:, 0]).numpy()
        return (logits, bird_logits, feats[:, 0].numpy()) if features else (logits, bird_logits)

    return run


@pytest.fixture(scope="module")
def dinov2_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dinov2")
    ckpt = fakes.write_classifier_checkpoint(d / "cls.pt", DINOV2, 38, 182, seed=1, backbone_kwargs=SHALLOW)
    bird = fakes.write_bird_head(d / "bird.pt", dim=WIDTH, hidden=512, seed=2)
    return d, ckpt, bird


@pytest.fixture(scope="module")
def dinov2_export(dinov2_files):
    d, ckpt, bird = dinov2_files
    return export_classifier(ckpt, d / "cls.onnx", bird_head=bird, backbone_kwargs=SHALLOW)


def test_dinov2_export_follows_the_contract(dinov2_export):
    model = onnx.load(str(dinov2_export.path), load_external_data=False)
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, shape(i)) for i in model.graph.input] == [("input", ["batch", 3, 182, 182])]
    assert [(o.name, shape(o)) for o in model.graph.output] == [("logits", ["batch", 38]), ("bird_logits", ["batch", 8]),
                                                                ("features", ["batch", WIDTH])]
    assert dinov2_export.position_table == "37x37 resampled to 13x13 (bicubic, antialias) and baked in"
    assert (dinov2_export.crop_size, dinov2_export.global_pool, dinov2_export.bird_classes) == (182, None, 8)


def test_dinov2_export_computes_what_timm_computes(dinov2_files, dinov2_export):
    _, ckpt, bird = dinov2_files
    x = probe_crops(182, count=5, seed=7)  # not the exporter's own probes
    ref_logits, ref_bird, ref_features = timm_reference(ckpt, bird, SHALLOW, features=True)(x)
    logits, bird_logits = OnnxClassifier(dinov2_export.path)(x)
    assert np.abs(logits - ref_logits).max() <= 1e-4
    assert np.abs(bird_logits - ref_bird).max() <= 1e-4
    features = OnnxClassifier(dinov2_export.path).classify(x).features  # issue 34: the class token
    assert features.shape == (5, WIDTH) and np.abs(features - ref_features).max() <= 1e-4
    assert np.abs(ref_logits).max() > 1.0  # logits of a real spread, not all ~0
    assert np.abs(ref_logits[1:] - ref_logits[0]).max() > 0.05  # and they depend on the crop
    p = dinov2_export.parity
    assert p.ok and p.max_abs_logit <= 1e-4 and p.max_abs_bird_logit <= 1e-4 and p.max_abs_logit_baked == 0.0
    assert p.max_abs_feature is not None and p.max_abs_feature <= 1e-4


def test_baking_is_needed(dinov2_files, dinov2_export):
    """Using the 37x37 table's first 169 entries (no resampling) gives other answers: the resample matters."""
    _, ckpt, _ = dinov2_files
    data = torch.load(str(ckpt), map_location="cpu", weights_only=False)
    naive = timm.create_model(DINOV2, pretrained=False, num_classes=38, img_size=182, **SHALLOW).eval()
    state = {k.removeprefix("base_model."): v for k, v in data["state_dict"].items()}
    state["pos_embed"] = state["pos_embed"][:, :170]
    naive.load_state_dict(state)
    x = probe_crops(182, count=3, seed=7)
    with torch.no_grad():
        wrong = naive(torch.from_numpy(x)).numpy()
    logits, _ = OnnxClassifier(dinov2_export.path)(x)
    assert np.abs(wrong - logits).max() > 1e-2


def test_wrong_checkpoint_for_the_card_is_refused(dinov2_files, tmp_path):
    _, ckpt, bird = dinov2_files
    with pytest.raises(CheckpointError, match=f"holds a {DINOV2} classifier, the model card expects {DINOV3}"):
        export_classifier(ckpt, tmp_path / "x.onnx", expect_backbone=DINOV3, backbone_kwargs=SHALLOW)
    with pytest.raises(CheckpointError, match="has 38 classes, the model card expects 40"):
        export_classifier(ckpt, tmp_path / "x.onnx", expect_classes=40, backbone_kwargs=SHALLOW)
    with pytest.raises(CheckpointError, match="do not fit the timm architecture"):
        export_classifier(ckpt, tmp_path / "x.onnx", backbone_kwargs={**SHALLOW, "depth": 3})
    wide_bird = fakes.write_bird_head(tmp_path.parent / "wide_bird.pt", dim=1024, hidden=64)
    with pytest.raises(CheckpointError, match=f"the bird head reads 1024 features, the {DINOV2} class token has {WIDTH}"):
        export_classifier(ckpt, tmp_path / "x.onnx", bird_head=wide_bird, backbone_kwargs=SHALLOW)
    assert list(tmp_path.iterdir()) == []


def test_int8_variant_and_its_drift(dinov2_export, tmp_path):
    x = probe_crops(182, count=6, seed=3)
    drift = quantize_classifier(dinov2_export.path, tmp_path / "cls-int8.onnx", x, 182)
    fp32_bytes, int8_bytes = dinov2_export.path.stat().st_size, (tmp_path / "cls-int8.onnx").stat().st_size
    assert int8_bytes < 0.5 * fp32_bytes  # matrices quantised; the position table stays float32
    assert drift.probes == 6 and 0.0 < drift.max_abs_logit < 2.0 and 0.0 < drift.max_abs_bird_logit < 1.0
    assert 0.0 < drift.mean_abs_logit <= drift.max_abs_logit
    logits, bird = OnnxClassifier(tmp_path / "cls-int8.onnx")(x)
    assert logits.shape == (6, 38) and bird.shape == (6, 8)


def _dinov3_case(tmp_path: Path, backbone_kwargs: dict) -> tuple[Path, Path, object]:
    ckpt = fakes.write_classifier_checkpoint(tmp_path / "v3.pt", DINOV3, 40, 224, seed=4, global_pool="token",
                                             backbone_kwargs=backbone_kwargs)
    bird = fakes.write_bird_head(tmp_path / "v3bird.pt", dim=backbone_kwargs.get("embed_dim", 1024), seed=5)
    return ckpt, bird, export_classifier(ckpt, tmp_path / "v3.onnx", bird_head=bird, backbone_kwargs=backbone_kwargs)


def test_dinov3_export_uses_the_class_token(tmp_path):
    ckpt, bird, result = _dinov3_case(tmp_path, SHALLOW)
    assert (result.crop_size, result.global_pool) == (224, "token")
    assert result.position_table.startswith("none (RoPE")
    x = probe_crops(224, count=4, seed=9)
    logits, bird_logits = OnnxClassifier(result.path)(x)
    token, token_bird = timm_reference(ckpt, bird, SHALLOW, global_pool="token")(x)
    avg, _ = timm_reference(ckpt, bird, SHALLOW)(x)  # timm's default pooling for DINOv3 is "avg"
    assert np.abs(logits - token).max() <= 1e-4 and np.abs(bird_logits - token_bird).max() <= 1e-4
    assert np.abs(logits - avg).max() > 0.1


@pytest.mark.slow
def test_full_vit_l14_at_182(tmp_path):
    """The real DeepFaune 1.1-1.4 architecture (24 blocks, 304 M parameters)."""
    start = time.monotonic()
    ckpt = fakes.write_classifier_checkpoint(tmp_path / "full.pt", DINOV2, 38, 182, seed=11)
    bird = fakes.write_bird_head(tmp_path / "bird.pt", seed=12)
    result = export_classifier(ckpt, tmp_path / "full.onnx", bird_head=bird)
    x = probe_crops(182, count=4, seed=13)
    ref_logits, ref_bird = timm_reference(ckpt, bird, {})(x)
    logits, bird_logits = OnnxClassifier(result.path)(x)
    assert np.abs(logits - ref_logits).max() <= 1e-4 and np.abs(bird_logits - ref_bird).max() <= 1e-4
    assert result.parity.ok and result.parity.max_abs_logit_baked == 0.0
    print(f"\nViT-L/14@182: parity {result.parity.as_dict()}, export {result.seconds:.0f} s, "
          f"test {time.monotonic() - start:.0f} s")


@pytest.mark.slow
def test_full_dinov3_vit_l16_at_224(tmp_path):
    """The real DeepFaune 1.5 architecture (24 blocks, 4 register tokens, RoPE)."""
    start = time.monotonic()
    ckpt, bird, result = _dinov3_case(tmp_path, {})
    x = probe_crops(224, count=4, seed=13)
    ref_logits, ref_bird = timm_reference(ckpt, bird, {}, global_pool="token")(x)
    logits, bird_logits = OnnxClassifier(result.path)(x)
    assert np.abs(logits - ref_logits).max() <= 1e-4 and np.abs(bird_logits - ref_bird).max() <= 1e-4
    print(f"\nViT-L/16@224 DINOv3: parity {result.parity.as_dict()}, export {result.seconds:.0f} s, "
          f"test {time.monotonic() - start:.0f} s")
