"""DeepFaune's classifier (timm ViT + optional bird head) exported to one ONNX graph, with parity.

The reference is the model as DeepFaune builds it: `timm.create_model(backbone, pretrained=False,
num_classes=N, dynamic_img_size=True)` (+ `global_pool="token"` for DINOv3), weights from the
checkpoint's `base_model.` keys; logits = forward_head(forward_features(x)); the bird head reads the
class token of forward_features (after the final norm), which the graph also gives as `features` (issue 34).

DINOv2 (<= 1.4) stores a 37x37 position table and, with dynamic_img_size, resamples it to the
13x13 grid of a 182 px crop at every call (bicubic, antialiased). The exported graph is built
from the same architecture at a fixed img_size with that resampled table baked in; PyTorch
checks the baked model against the dynamic one before onnxruntime is checked against both.
DINOv3 (1.5) has no position table (RoPE, cached for the fixed grid in float32 by timm).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deepfaune_plugin.atomic import atomic_output
from deepfaune_plugin.engine.onnx_models import FEATURES, OnnxClassifier

from .checkpoint import CheckpointError, ClassifierCheckpoint, load_bird_head, load_classifier_checkpoint
from .deps import require
from .parity import ClassifierParity, ParityError, classifier_parity
from .probes import probe_crops

torch = require("torch")
timm = require("timm")
nn = torch.nn

OPSET = 17
_NON_PERSISTENT = ("rope.periods",)  # buffers some timm versions saved and later ones recompute


def default_options(backbone: str) -> tuple[int, str | None]:
    """(crop size, global_pool) DeepFaune uses for a backbone."""
    if "dinov3" in backbone:
        return 224, "token"
    if "dinov2" in backbone:
        return 182, None
    raise CheckpointError(f"unknown DeepFaune backbone {backbone!r}: give the crop size and pooling explicitly")


class BirdHead(nn.Module):
    """Linear -> BatchNorm1d -> GELU -> Dropout(0) -> Linear on the class token (keys bird_model.0..4)."""

    def __init__(self, state: Mapping[str, Any]):
        super().__init__()
        try:
            hidden, dim = state["bird_model.0.weight"].shape
            classes = state["bird_model.4.weight"].shape[0]
        except KeyError as err:
            raise CheckpointError(f"bird head state_dict lacks {err}") from err
        self.bird_model = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
                                        nn.Dropout(p=0.0), nn.Linear(hidden, classes))
        try:
            self.load_state_dict(dict(state), strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"bird head does not fit Linear-BatchNorm-GELU-Linear: {err}") from err
        self.eval()

    def forward(self, cls_token):
        return self.bird_model(cls_token)


class DeepfauneClassifier(nn.Module):
    """A timm ViT and an optional bird head: (logits[, bird_logits], features) from one forward pass, in the
    order of `output_names`; features = the class token after the final norm, what both heads read."""

    def __init__(self, vit, bird: BirdHead | None):
        super().__init__()
        self.vit, self.bird = vit.eval(), bird

    @property
    def output_names(self) -> list[str]:
        return ["logits", "bird_logits", FEATURES] if self.bird is not None else ["logits", FEATURES]

    def forward(self, x):
        feats = self.vit.forward_features(x)
        logits = self.vit.forward_head(feats)
        token = feats[:, 0]
        if self.bird is None:
            return logits, token
        return logits, self.bird(token), token

    @torch.no_grad()
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(logits, bird_logits or None, features) of a float32 batch."""
        out = [t.numpy() for t in self(torch.from_numpy(np.ascontiguousarray(batch)))]
        return out[0], (out[1] if self.bird is not None else None), out[-1]


def _create(backbone: str, num_classes: int, global_pool: str | None, kwargs: Mapping[str, Any]):
    extra = dict(kwargs)
    if global_pool is not None:
        extra["global_pool"] = global_pool
    try:
        return timm.create_model(backbone, pretrained=False, num_classes=num_classes, **extra).eval()
    except Exception as err:  # unknown model name in this timm, bad kwargs
        raise CheckpointError(f"timm {timm.__version__} cannot build {backbone!r} ({err}); "
                              f"DINOv3 needs timm >= 1.0.20") from err


def _load(model, state: Mapping[str, Any], what: str) -> list[str]:
    own = model.state_dict()
    dropped = [k for k in state if k not in own and k.endswith(_NON_PERSISTENT)]
    state = {k: v for k, v in state.items() if k not in dropped}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the {what} weights do not fit the timm architecture: {err}") from err
    return dropped


def build_reference(ckpt: ClassifierCheckpoint, bird_state: Mapping[str, Any] | None, global_pool: str | None,
                    backbone_kwargs: Mapping[str, Any] | None = None) -> tuple[DeepfauneClassifier, list[str]]:
    """The classifier as DeepFaune runs it (dynamic image size); also returns dropped buffer keys."""
    vit = _create(ckpt.backbone, ckpt.num_classes, global_pool, {"dynamic_img_size": True, **(backbone_kwargs or {})})
    dropped = _load(vit, ckpt.state_dict, "classifier")
    bird = BirdHead(bird_state) if bird_state is not None else None
    if bird is not None and bird.bird_model[0].in_features != vit.num_features:
        raise CheckpointError(f"the bird head reads {bird.bird_model[0].in_features} features, "
                              f"the {ckpt.backbone} class token has {vit.num_features}")
    return DeepfauneClassifier(vit, bird), dropped


def build_static(reference: DeepfauneClassifier, ckpt: ClassifierCheckpoint, crop_size: int,
                 global_pool: str | None, backbone_kwargs: Mapping[str, Any] | None = None
                 ) -> tuple[DeepfauneClassifier, str]:
    """The same network at a fixed crop size, position table resampled once and baked in."""
    from timm.layers import resample_abs_pos_embed

    ref = reference.vit
    static = _create(ckpt.backbone, ckpt.num_classes, global_pool,
                     {"img_size": crop_size, "dynamic_img_size": False, **(backbone_kwargs or {})})
    state = dict(ref.state_dict())
    note = "none (RoPE, computed by timm for the fixed grid)" if getattr(static, "rope", None) is not None else "none"
    table = state.get("pos_embed")
    if table is not None:
        old, new = tuple(ref.patch_embed.grid_size), tuple(static.patch_embed.grid_size)
        prefix = 0 if getattr(ref, "no_embed_class", False) else ref.num_prefix_tokens
        if old != new:
            with torch.no_grad():
                state["pos_embed"] = resample_abs_pos_embed(table, new_size=list(new), old_size=list(old),
                                                            num_prefix_tokens=prefix)
            note = f"{old[0]}x{old[1]} resampled to {new[0]}x{new[1]} (bicubic, antialias) and baked in"
        else:
            note = f"{old[0]}x{old[1]} (no resampling needed)"
    _load(static, state, "classifier")
    return DeepfauneClassifier(static, reference.bird), note


@dataclass
class ClassifierExport:
    path: Path
    backbone: str
    num_classes: int
    crop_size: int
    global_pool: str | None
    bird_classes: int | None
    position_table: str
    transform: str
    parity: ClassifierParity
    seconds: float
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone, "num_classes": self.num_classes, "crop_size": self.crop_size,
            "global_pool": self.global_pool, "bird_classes": self.bird_classes,
            "position_table": self.position_table, "checkpoint_transform": self.transform,
            "parity": self.parity.as_dict(), "notes": self.notes,
        }


def export_onnx(model: DeepfauneClassifier, path: Path, crop_size: int, opset: int = OPSET) -> None:
    names = model.output_names
    example = torch.zeros(1, 3, crop_size, crop_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=names, do_constant_folding=True,
                          dynamic_axes={n: {0: "batch"} for n in ["input", *names]})
    _fix_features_width(path, model.vit.num_features)


def _fix_features_width(path: Path, width: int) -> None:
    """The exporter names the features' width symbolically (it comes out of a Gather of the token axis); the
    contract says [batch, D] with D the class token's width, as the torch-free graph writes it."""
    import onnx

    graph = onnx.load(str(path))
    for output in graph.graph.output:
        if output.name == FEATURES:
            dim = output.type.tensor_type.shape.dim[1]
            dim.ClearField("dim_param")
            dim.dim_value = width
    onnx.save(graph, str(path))


def export_classifier(checkpoint: Path | str, out: Path | str, *, bird_head: Path | str | None = None,
                      crop_size: int | None = None, global_pool: str | None = None,
                      expect_backbone: str | None = None, expect_classes: int | None = None,
                      backbone_kwargs: Mapping[str, Any] | None = None, probes: np.ndarray | None = None,
                      opset: int = OPSET) -> ClassifierExport:
    """Export a DeepFaune classifier checkpoint (+ bird head) to `out`, refusing it on a parity failure.

    `out` appears only once the parity checks passed (written to a temporary name, then renamed).
    `backbone_kwargs` change timm's architecture (tests use a shallower ViT); never for real weights.
    """
    start = time.monotonic()
    out = Path(out)
    ckpt = load_classifier_checkpoint(checkpoint)
    if expect_backbone is not None and ckpt.backbone != expect_backbone:
        raise CheckpointError(f"{checkpoint} holds a {ckpt.backbone} classifier, the model card expects {expect_backbone}")
    if expect_classes is not None and ckpt.num_classes != expect_classes:
        raise CheckpointError(f"{checkpoint} has {ckpt.num_classes} classes, the model card expects {expect_classes}")
    try:
        default_crop, default_pool = default_options(ckpt.backbone)
    except CheckpointError:
        if crop_size is None:
            raise
        default_crop, default_pool = crop_size, None
    crop_size = crop_size or default_crop
    global_pool = global_pool or default_pool
    bird_state = load_bird_head(bird_head) if bird_head is not None else None

    reference, dropped = build_reference(ckpt, bird_state, global_pool, backbone_kwargs)
    static, position_note = build_static(reference, ckpt, crop_size, global_pool, backbone_kwargs)
    ckpt.state_dict.clear()  # the weights live in the two models now
    notes = [f"dropped non-persistent buffer {k} (recomputed by timm in float32)" for k in dropped]
    if ckpt.transform and f"({crop_size}, {crop_size})" not in ckpt.transform:
        notes.append(f"the checkpoint's stored transform ({ckpt.transform}) does not resize to {crop_size}; "
                     f"DeepFaune ignores it and so do we")

    x = probes if probes is not None else probe_crops(crop_size)
    ref_logits, ref_bird, ref_features = reference.run(x)
    baked_logits, _, _ = static.run(x)
    with atomic_output(out) as tmp:
        export_onnx(static, tmp, crop_size, opset)
        session = OnnxClassifier(tmp, size=crop_size)
        got = session.classify(x)
        got_logits, got_bird = got.logits, got.bird_logits
        one_logits, _ = session(x[:1])  # the batch axis is dynamic
        parity = classifier_parity(ref_logits, got_logits, ref_bird, got_bird, baked_logits,
                                   ref_features, got.features)
        parity.max_abs_logit = max(parity.max_abs_logit, float(np.max(np.abs(one_logits - ref_logits[:1]))))
        del session
        if not parity.ok:
            raise ParityError(f"{ckpt.backbone} export does not match PyTorch: {parity.as_dict()}")
    return ClassifierExport(out, ckpt.backbone, ckpt.num_classes, crop_size, global_pool,
                            None if bird_state is None else int(ref_bird.shape[1]), position_note,
                            ckpt.transform, parity, time.monotonic() - start, notes)
