"""DeepFaune's classifiers (DINOv2 for 1.3 and 1.4, DINOv3 for 1.5) and the bird head as one ONNX graph, from the
checkpoint's arrays alone: no torch, no timm.

The graph computes what DeepFaune runs: timm's `vit_large_patch14_dinov2` with `dynamic_img_size=True` on a
182 px crop, i.e. the checkpoint's 37x37 position table resampled to the 13x13 grid (bicubic, antialiased, the
way `timm.layers.resample_abs_pos_embed` calls `F.interpolate`), then 24 pre-norm blocks (LayerNorm,
multi-head attention, LayerScale, exact-GELU MLP, LayerScale), the final LayerNorm, and the class token read by
the linear head and by the bird head (Linear, BatchNorm1d, GELU, Linear: BatchNorm folded into the Linear).
Everything that is a shape (width, depth, MLP width, classes) is read from the arrays; heads are 64 wide, as in
every timm ViT this reads. DINOv3 (timm's Eva layout: `gamma_1`/`gamma_2`, register tokens, no position table)
gets timm's rotary tables for its grid instead (`rope_tables`). Parity with timm is measured at install when
torch is there, in CI (tests/models/test_convert_vit.py) and by benchmarks/convert_parity.py.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..graph import Graph, features_output
from .read import ConversionError

HEAD_DIM = 64
LAYER_NORM_EPS = 1e-6  # timm's DINOv2 ViTs
DINOV3_LAYER_NORM_EPS = 1e-5  # timm's DINOv3 (Eva) ViTs
ROPE_TEMPERATURE = 100.0  # DINOv3's rotary periods: 100 ** (2 i / (head_dim / 2))
BATCH_NORM_EPS = 1e-5  # torch's BatchNorm1d default, which the bird head uses
PRODUCER = "deepfaune-plugin convert (torch-free)"


@dataclass(frozen=True)
class VitShape:
    """What the arrays say the network is."""

    width: int
    depth: int
    patch: int
    mlp: int
    classes: int
    table_grid: int  # the stored position table is table_grid x table_grid (37 for DINOv2 at 518 px)
    prefix: int  # class + register tokens
    table_has_prefix: bool  # timm's no_embed_class=False: the table holds rows for the prefix tokens too
    rope: bool = False  # DINOv3: rotary position on the patch tokens' queries and keys, no table


def vit_shape(state: Mapping[str, np.ndarray], where: str) -> VitShape:
    rope = "pos_embed" not in state and "blocks.0.gamma_1" in state  # timm's Eva layout (DINOv3)
    need = ["patch_embed.proj.weight", "cls_token", "norm.weight", "head.weight"] + ([] if rope else ["pos_embed"])
    missing = [k for k in need if k not in state]
    if missing:
        raise ConversionError(f"{where}: not a timm ViT state_dict (no {', '.join(missing)})")
    width, _, patch, patch2 = state["patch_embed.proj.weight"].shape
    if patch != patch2:
        raise ConversionError(f"{where}: patch embedding is {patch}x{patch2}, not square")
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if depth == 0:
        raise ConversionError(f"{where}: no transformer blocks (blocks.N.*) in the state_dict")
    prefix = 1 + (state["reg_token"].shape[1] if "reg_token" in state else 0)
    if width % HEAD_DIM:
        raise ConversionError(f"{where}: width {width} is not a whole number of {HEAD_DIM}-wide heads")
    mlp, classes = int(state["blocks.0.mlp.fc1.weight"].shape[0]), int(state["head.weight"].shape[0])
    if rope:
        return VitShape(width=int(width), depth=depth, patch=int(patch), mlp=mlp, classes=classes, table_grid=0,
                        prefix=prefix, table_has_prefix=False, rope=True)
    rows = state["pos_embed"].shape[1]
    for has_prefix in (True, False):
        cells = rows - (prefix if has_prefix else 0)
        grid = math.isqrt(max(cells, 0))
        if cells > 0 and grid * grid == cells:
            break
    else:
        raise ConversionError(f"{where}: a position table of {rows} rows is not a square grid")
    return VitShape(width=int(width), depth=depth, patch=int(patch), mlp=mlp, classes=classes, table_grid=grid,
                    prefix=prefix, table_has_prefix=has_prefix)


def _cubic_aa(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """The bicubic kernel of torch's antialiased interpolation (a = -0.5, as Pillow's)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def resize_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of torch's `interpolate(mode="bicubic", antialias=True, align_corners=False)`
    along one axis: the kernel stretched by the scale when shrinking, each row normalised to sum 1."""
    scale = size_in / size_out
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    out = np.zeros((size_out, size_in))
    for i in range(size_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size_in)
        taps = _cubic_aa((np.arange(lo, hi) - center + 0.5) * inv)
        total = taps.sum()
        out[i, lo:hi] = taps / total if total != 0 else taps
    return out


def rope_tables(grid: int, head_dim: int = HEAD_DIM) -> tuple[np.ndarray, np.ndarray]:
    """DINOv3's rotary (cos, sin) [grid*grid, head_dim] as timm's RotaryEmbeddingDinoV3 makes them: patch centres
    (i + 0.5) / grid mapped to [-1, 1], rows y then x; angles 2 pi coord / period for each of head_dim/4 periods,
    y's angles then x's, the whole repeated twice (the rotate-half layout)."""
    n = head_dim // 4
    periods = ROPE_TEMPERATURE ** (2.0 * np.arange(n) / (head_dim // 2))
    centre = (np.arange(grid) + 0.5) / grid * 2.0 - 1.0
    yy, xx = np.meshgrid(centre, centre, indexing="ij")
    angles = 2 * np.pi * np.concatenate([yy.reshape(-1, 1) / periods, xx.reshape(-1, 1) / periods], axis=1)
    angles = np.concatenate([angles, angles], axis=1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rotate(g: Graph, t: str, prefix: int, cos: str, sin: str, half: int = HEAD_DIM // 2) -> str:
    """q or k [B, H, T, Dh] with the patch tokens rotated (x cos + rotate_half(x) sin), prefix tokens kept."""
    i64 = lambda v: g.const(v, dtype=np.int64)  # noqa: E731
    head = g.op("Slice", t, i64([0]), i64([prefix]), i64([2]))
    patches = g.op("Slice", t, i64([prefix]), i64([2**62]), i64([2]))
    x1 = g.op("Slice", patches, i64([0]), i64([half]), i64([3]))
    x2 = g.op("Slice", patches, i64([half]), i64([2**62]), i64([3]))
    rotated = g.op("Concat", g.op("Neg", x2), x1, axis=3)
    patches = g.op("Add", g.op("Mul", patches, cos), g.op("Mul", rotated, sin))
    return g.op("Concat", head, patches, axis=2)


def resample_table(table: np.ndarray, shape: VitShape, grid: int) -> np.ndarray:
    """The position table for a `grid` x `grid` patch grid, the prefix rows (if stored) kept as they are."""
    keep = shape.prefix if shape.table_has_prefix else 0
    head, cells = table[:, :keep], table[:, keep:]
    if shape.table_grid == grid:
        return table.astype(np.float32)
    n = shape.table_grid
    w = resize_weights(n, grid)
    cells = cells.reshape(n, n, -1).astype(np.float64)
    cells = np.einsum("yi,ijd,xj->yxd", w, cells, w).reshape(1, grid * grid, -1)
    return np.concatenate([head.astype(np.float64), cells], axis=1).astype(np.float32)


def position_note(state: Mapping[str, np.ndarray], crop_size: int) -> str:
    """What the manifest says of the position table (the torch export's wording)."""
    shape = vit_shape(state, "classifier")
    if shape.rope:
        return "none (RoPE, computed by timm for the fixed grid)"
    n, grid = shape.table_grid, crop_size // shape.patch
    if n == grid:
        return f"{n}x{n} (no resampling needed)"
    return f"{n}x{n} resampled to {grid}x{grid} (bicubic, antialias) and baked in"


def _array(state: Mapping[str, np.ndarray], key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(state[key], dtype=np.float32)
    except KeyError:
        raise ConversionError(f"{where}: the state_dict has no {key}") from None


def fold_bird_head(bird: Mapping[str, np.ndarray], width: int, where: str) -> tuple[np.ndarray, ...]:
    """(w1 [in, hidden], b1, w2 [hidden, classes], b2) with BatchNorm1d (eval statistics) folded into w1, b1."""
    get = lambda k: np.asarray(bird[k], dtype=np.float64) if k in bird else None  # noqa: E731
    keys = ["bird_model.0.weight", "bird_model.0.bias", "bird_model.1.weight", "bird_model.1.bias",
            "bird_model.1.running_mean", "bird_model.1.running_var", "bird_model.4.weight", "bird_model.4.bias"]
    missing = [k for k in keys if k not in bird]
    if missing:
        raise ConversionError(f"{where}: not DeepFaune's bird head (no {', '.join(missing)})")
    w1, b1, gamma, beta, mean, var, w2, b2 = (get(k) for k in keys)
    if w1.shape[1] != width:
        raise ConversionError(f"{where}: the bird head reads {w1.shape[1]} features, the class token has {width}")
    factor = gamma / np.sqrt(var + BATCH_NORM_EPS)
    w1f = (w1 * factor[:, None]).T
    b1f = (b1 - mean) * factor + beta
    return (w1f.astype(np.float32), b1f.astype(np.float32), w2.T.astype(np.float32), b2.astype(np.float32))


def build_classifier(state: Mapping[str, Any], bird: Mapping[str, Any] | None, crop_size: int,
                     where: str = "classifier", metadata: Mapping[str, str] | None = None,
                     features: bool = True) -> onnx.ModelProto:
    """The ONNX classifier (input [batch, 3, crop, crop] -> logits [, bird_logits], features) from timm-keyed
    arrays. `features=False` leaves out the class token output (the graph of before issue 34: tests compare)."""
    shape = vit_shape(state, where)
    if crop_size % shape.patch:
        raise ConversionError(f"{where}: a {crop_size} px crop is not a whole number of {shape.patch} px patches")
    grid, d = crop_size // shape.patch, shape.width
    heads, prefix = d // HEAD_DIM, shape.prefix
    w = lambda key: _array(state, key, where)  # noqa: E731
    g = Graph()
    i64 = lambda v: g.const(v, dtype=np.int64)  # noqa: E731

    x = g.op("Conv", "input", g.const(w("patch_embed.proj.weight"), stem="w"), g.const(w("patch_embed.proj.bias"),
             stem="b"), kernel_shape=[shape.patch] * 2, strides=[shape.patch] * 2)
    x = g.op("Transpose", g.op("Reshape", x, i64([0, d, -1])), perm=[0, 2, 1])  # [B, grid^2, D]
    tokens = w("cls_token")
    if "reg_token" in state:
        tokens = np.concatenate([tokens, w("reg_token")], axis=1)
    cos = sin = None
    if shape.rope:
        c, s_ = rope_tables(grid)
        cos, sin = g.const(c, stem="rope_cos"), g.const(s_, stem="rope_sin")
    elif not shape.table_has_prefix:  # no_embed_class: the table is added to the patches before the tokens join
        x = g.op("Add", x, g.const(resample_table(w("pos_embed"), shape, grid), stem="pos_embed"))
    else:  # the prefix tokens' table rows are constants: add them once, here
        table = resample_table(w("pos_embed"), shape, grid)
        tokens = tokens + table[:, :prefix]
        x = g.op("Add", x, g.const(table[:, prefix:], stem="pos_embed"))
    batch = g.op("Slice", g.op("Shape", x), i64([0]), i64([1]))
    tokens = g.op("Expand", g.const(tokens, stem="prefix_tokens"), g.op("Concat", batch, i64([prefix, d]), axis=0))
    x = g.op("Concat", tokens, x, axis=1)

    def layer_norm(t: str, key: str) -> str:
        return g.op("LayerNormalization", t, g.const(w(f"{key}.weight")), g.const(w(f"{key}.bias")), axis=-1,
                    epsilon=DINOV3_LAYER_NORM_EPS if shape.rope else LAYER_NORM_EPS)

    def scaled(t: str, *keys: str) -> str:  # LayerScale, under timm's ViT name (ls1.gamma) or Eva's (gamma_1)
        key = next((k for k in keys if k in state), None)
        return t if key is None else g.op("Mul", t, g.const(w(key), stem="ls"))

    def linear(t: str, key: str) -> str:
        bias = w(f"{key}.bias") if f"{key}.bias" in state else None
        return g.linear(t, w(f"{key}.weight").T, bias)

    scale = g.const(np.float32(HEAD_DIM ** -0.5))
    for i in range(shape.depth):
        b = f"blocks.{i}"
        qkv = linear(layer_norm(x, f"{b}.norm1"), f"{b}.attn.qkv")
        qkv = g.op("Transpose", g.op("Reshape", qkv, i64([0, 0, 3, heads, HEAD_DIM])), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, i64(j), axis=0) for j in range(3))  # [B, H, T, Dh]
        if cos is not None:
            q, k = (rotate(g, t, prefix, cos, sin) for t in (q, k))
        att = g.op("Softmax", g.op("MatMul", g.op("Mul", q, scale), g.op("Transpose", k, perm=[0, 1, 3, 2])), axis=-1)
        o = g.op("Reshape", g.op("Transpose", g.op("MatMul", att, v), perm=[0, 2, 1, 3]), i64([0, 0, d]))
        o = linear(o, f"{b}.attn.proj")
        x = g.op("Add", x, scaled(o, f"{b}.ls1.gamma", f"{b}.gamma_1"))
        h = g.gelu(linear(layer_norm(x, f"{b}.norm2"), f"{b}.mlp.fc1"))
        h = linear(h, f"{b}.mlp.fc2")
        x = g.op("Add", x, scaled(h, f"{b}.ls2.gamma", f"{b}.gamma_2"))
    cls = g.op("Gather", layer_norm(x, "norm"), i64(0), axis=1)  # the class token after the final norm [B, D]
    g.op("Add", g.op("MatMul", cls, g.const(w("head.weight").T, stem="w")), g.const(w("head.bias")), outputs=["logits"])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", shape.classes])]
    if bird is not None:
        w1, b1, w2, b2 = fold_bird_head(bird, d, where)
        hidden = g.gelu(g.linear(cls, w1, b1))
        g.op("Add", g.op("MatMul", hidden, g.const(w2, stem="w")), g.const(b2), outputs=["bird_logits"])
        outputs.append(helper.make_tensor_value_info("bird_logits", TensorProto.FLOAT, ["batch", int(w2.shape[1])]))
    if features:
        outputs.append(features_output(g, cls, d))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, crop_size, crop_size])]
    where_from = (f"rotary positions on the {grid}x{grid} grid" if shape.rope else
                  f"position table {shape.table_grid}x{shape.table_grid} resampled to {grid}x{grid}")
    doc = (f"DeepFaune classifier: ViT {d} wide, {shape.depth} blocks, {shape.classes} classes, {crop_size} px; "
           f"{where_from}; converted without torch")
    return g.model(inputs, outputs, doc, dict(metadata or {}), producer=PRODUCER)


def convert_classifier(checkpoint: Path, bird_head: Path | None, out: Path, crop_size: int) -> Path:
    """Read the official files (torch-free) and write the ONNX classifier to `out` (whole or not at all)."""
    from deepfaune_plugin.atomic import atomic_output

    from .read import read_bird_head, read_classifier

    ckpt = read_classifier(checkpoint)
    bird = read_bird_head(bird_head) if bird_head is not None else None
    model = build_classifier(ckpt.state_dict, bird, crop_size, where=str(checkpoint),
                             metadata={"backbone": ckpt.backbone, "converter": "torch-free"})
    with atomic_output(out) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return out
