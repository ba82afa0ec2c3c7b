"""Issue 17 item 2/3: the torch-free DINOv2 classifier graph against timm (DeepFaune's own forward pass) and
against the torch export, on random checkpoints in the official format. The NumPy-only tests run everywhere."""
from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from deepfaune_plugin.models.convert.formats import CheckpointError
from deepfaune_plugin.models.convert.read import ConversionError, read_classifier
from deepfaune_plugin.models.convert.vit import build_classifier, fold_bird_head, resize_weights, vit_shape

DINOV2 = "vit_large_patch14_dinov2.lvd142m"
SHALLOW = {"depth": 2, "embed_dim": 192, "num_heads": 3}


def run(model, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def tiny_state(rng: np.random.Generator, width: int = 128, depth: int = 1, patch: int = 14, grid: int = 5,
               classes: int = 4) -> dict[str, np.ndarray]:
    r = lambda *s, std=0.05: (rng.standard_normal(s) * std).astype(np.float32)  # noqa: E731
    state = {"patch_embed.proj.weight": r(width, 3, patch, patch), "patch_embed.proj.bias": r(width),
             "cls_token": r(1, 1, width, std=1.0), "pos_embed": r(1, 1 + grid * grid, width, std=1.0),
             "norm.weight": 1 + r(width), "norm.bias": r(width), "head.weight": r(classes, width, std=0.3),
             "head.bias": r(classes)}
    for i in range(depth):
        b = f"blocks.{i}."
        state.update({b + "norm1.weight": 1 + r(width), b + "norm1.bias": r(width),
                      b + "attn.qkv.weight": r(3 * width, width, std=0.2), b + "attn.qkv.bias": r(3 * width),
                      b + "attn.proj.weight": r(width, width, std=0.2), b + "attn.proj.bias": r(width),
                      b + "ls1.gamma": r(width, std=0.5), b + "norm2.weight": 1 + r(width), b + "norm2.bias": r(width),
                      b + "mlp.fc1.weight": r(4 * width, width, std=0.2), b + "mlp.fc1.bias": r(4 * width),
                      b + "mlp.fc2.weight": r(width, 4 * width, std=0.2), b + "mlp.fc2.bias": r(width),
                      b + "ls2.gamma": r(width, std=0.5)})
    return state


def numpy_forward(state: dict, x: np.ndarray, heads: int) -> np.ndarray:
    """The ViT written out in float64 NumPy, with no resampling (the crop's grid is the table's): the logits."""
    token = numpy_class_token(state, x, heads)
    return token @ state["head.weight"].astype(np.float64).T + state["head.bias"].astype(np.float64)


def numpy_class_token(state: dict, x: np.ndarray, heads: int) -> np.ndarray:
    """The class token after the final norm [B, D], in float64: what the heads read."""
    s = {k: v.astype(np.float64) for k, v in state.items()}
    w = s["patch_embed.proj.weight"]
    d, _, p, _ = w.shape
    b, _, size, _ = x.shape
    n = size // p
    patches = x.astype(np.float64).reshape(b, 3, n, p, n, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, n * n, -1)
    t = patches @ w.reshape(d, -1).T + s["patch_embed.proj.bias"]
    t = np.concatenate([np.repeat(s["cls_token"], b, axis=0), t], axis=1) + s["pos_embed"]

    def ln(v, key):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * s[key + ".weight"] + s[key + ".bias"]

    def gelu(v):
        return 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))

    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(depth):
        k = f"blocks.{i}."
        qkv = ln(t, k + "norm1") @ s[k + "attn.qkv.weight"].T + s[k + "attn.qkv.bias"]
        q, kk, v = qkv.reshape(b, -1, 3, heads, d // heads).transpose(2, 0, 3, 1, 4)
        a = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(d // heads)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(b, -1, d) @ s[k + "attn.proj.weight"].T + s[k + "attn.proj.bias"]
        t = t + o * s[k + "ls1.gamma"]
        h = gelu(ln(t, k + "norm2") @ s[k + "mlp.fc1.weight"].T + s[k + "mlp.fc1.bias"])
        t = t + (h @ s[k + "mlp.fc2.weight"].T + s[k + "mlp.fc2.bias"]) * s[k + "ls2.gamma"]
    return ln(t, "norm")[:, 0]


def test_the_graph_computes_the_vit_written_out_in_numpy():
    rng = np.random.default_rng(3)
    state = tiny_state(rng)
    x = rng.standard_normal((2, 3, 70, 70)).astype(np.float32)
    logits, features = run(build_classifier(state, None, 70), x)
    expected = numpy_forward(state, x, heads=2)
    assert logits.shape == (2, 4)
    assert np.abs(logits - expected).max() <= 1e-4 and np.abs(expected).max() > 0.5
    token = numpy_class_token(state, x, heads=2)  # issue 34: the class token after the final norm
    assert features.shape == (2, 128) and features.dtype == np.float32
    assert np.abs(features - token).max() <= 1e-4 and np.abs(token).max() > 1.0


def test_issue34_features_output_leaves_the_logits_bit_for_bit():
    """The same checkpoint with and without the `features` output: the logits and bird logits are identical to
    the last bit (the output is an Identity made after the heads), and the graph's other nodes are unchanged."""
    rng = np.random.default_rng(8)
    state = tiny_state(rng, depth=2)
    width = 128
    bird = {"bird_model.0.weight": rng.standard_normal((32, width)).astype(np.float32) * 0.1,
            "bird_model.0.bias": rng.standard_normal(32).astype(np.float32) * 0.1,
            "bird_model.1.weight": 1 + rng.standard_normal(32).astype(np.float32) * 0.1,
            "bird_model.1.bias": rng.standard_normal(32).astype(np.float32) * 0.1,
            "bird_model.1.running_mean": rng.standard_normal(32).astype(np.float32) * 0.1,
            "bird_model.1.running_var": rng.uniform(0.5, 2, 32).astype(np.float32),
            "bird_model.4.weight": rng.standard_normal((8, 32)).astype(np.float32) * 0.3,
            "bird_model.4.bias": rng.standard_normal(8).astype(np.float32) * 0.1}
    old = build_classifier(state, bird, 70, features=False)
    new = build_classifier(state, bird, 70)
    assert [o.name for o in old.graph.output] == ["logits", "bird_logits"]
    assert [o.name for o in new.graph.output] == ["logits", "bird_logits", "features"]
    assert list(new.graph.node)[:-1] == list(old.graph.node) and new.graph.node[-1].op_type == "Identity"
    x = rng.standard_normal((3, 3, 70, 70)).astype(np.float32)
    old_logits, old_bird = run(old, x)
    new_logits, new_bird, features = run(new, x)
    assert np.array_equal(new_logits, old_logits) and np.array_equal(new_bird, old_bird)
    assert features.shape == (3, width) and np.abs(old_logits).max() > 0.5


def test_shapes_come_from_the_arrays_and_broken_state_dicts_are_named():
    state = tiny_state(np.random.default_rng(0), width=128, depth=3, grid=5)
    shape = vit_shape(state, "cls.pt")
    assert (shape.width, shape.depth, shape.patch, shape.mlp, shape.classes, shape.table_grid, shape.prefix,
            shape.table_has_prefix) == (128, 3, 14, 512, 4, 5, 1, True)
    with pytest.raises(ConversionError, match=r"cls\.pt: not a timm ViT state_dict \(no head\.weight\)"):
        vit_shape({k: v for k, v in state.items() if k != "head.weight"}, "cls.pt")
    with pytest.raises(ConversionError, match="cls.pt: a 100 px crop is not a whole number of 14 px patches"):
        build_classifier(state, None, 100, where="cls.pt")


def test_antialiased_bicubic_weights_shrinking_37_to_13():
    w = resize_weights(37, 13)
    assert w.shape == (13, 37) and np.allclose(w.sum(axis=1), 1.0)
    # scale 37/13 = 2.846, support 5.692: row 0 (centre 1.423) reads inputs 0..6, row 1 (centre 4.269) 0..9,
    # row 6 (centre 18.5) 13..23, as torch's int(centre -/+ support + 0.5) bounds give
    assert [int(np.count_nonzero(row)) for row in w[:2]] == [7, 10] and np.flatnonzero(w[6]).tolist() == [*range(13, 24)]
    assert np.argmax(w[6]) == 18  # the middle output reads the middle input most
    assert np.allclose(resize_weights(13, 13), np.eye(13))


def test_bird_head_batch_norm_is_folded_exactly():
    rng = np.random.default_rng(1)
    bird = {"bird_model.0.weight": rng.standard_normal((6, 4)), "bird_model.0.bias": rng.standard_normal(6),
            "bird_model.1.weight": rng.standard_normal(6), "bird_model.1.bias": rng.standard_normal(6),
            "bird_model.1.running_mean": rng.standard_normal(6), "bird_model.1.running_var": rng.random(6) + 0.5,
            "bird_model.4.weight": rng.standard_normal((3, 6)), "bird_model.4.bias": rng.standard_normal(3)}
    w1, b1, w2, b2 = fold_bird_head(bird, 4, "bird.pt")
    x = rng.standard_normal((5, 4))
    lin = x @ bird["bird_model.0.weight"].T + bird["bird_model.0.bias"]
    bn = (lin - bird["bird_model.1.running_mean"]) / np.sqrt(bird["bird_model.1.running_var"] + 1e-5)
    bn = bn * bird["bird_model.1.weight"] + bird["bird_model.1.bias"]
    assert np.abs((x @ w1 + b1) - bn).max() < 1e-5
    with pytest.raises(ConversionError, match="bird.pt: the bird head reads 4 features, the class token has 8"):
        fold_bird_head(bird, 8, "bird.pt")


def test_a_classifier_checkpoint_of_the_wrong_shape_is_refused_by_name(tmp_path: Path):
    path = tmp_path / "c.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"args": {"backbone": "x"}, "state_dict": {}}, protocol=2))
    with pytest.raises(CheckpointError, match=r"c\.pt: 'args' must hold 'backbone' and 'num_classes'"):
        read_classifier(path)


# --- against timm and the torch export (CI installs the export extra) -------------------------------------------
@pytest.fixture(scope="module")
def official(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    import official_checkpoints

    d = tmp_path_factory.mktemp("convert_vit")
    ckpt = official_checkpoints.write_classifier_checkpoint(d / "cls.pt", DINOV2, 38, 182, seed=1,
                                                            backbone_kwargs=SHALLOW)
    bird = official_checkpoints.write_bird_head(d / "bird.pt", dim=SHALLOW["embed_dim"], hidden=512, seed=2)
    return d, ckpt, bird


def test_torch_free_graph_matches_timm_and_the_torch_export(official):
    from test_export_classifier import timm_reference

    from deepfaune_plugin.engine.onnx_models import OnnxClassifier
    from deepfaune_plugin.models.convert.vit import convert_classifier
    from deepfaune_plugin.models.export.classifier import export_classifier
    from deepfaune_plugin.models.export.probes import probe_crops

    d, ckpt, bird = official
    free = convert_classifier(ckpt, bird, d / "free.onnx", 182)
    torch_made = export_classifier(ckpt, d / "torch.onnx", bird_head=bird, backbone_kwargs=SHALLOW).path
    x = probe_crops(182, count=6, seed=21)
    ref_logits, ref_bird = timm_reference(ckpt, bird, SHALLOW)(x)
    logits, bird_logits = OnnxClassifier(free, size=182)(x)
    t_logits, t_bird = OnnxClassifier(torch_made, size=182)(x)
    assert np.abs(logits - ref_logits).max() <= 1e-4 and np.abs(bird_logits - ref_bird).max() <= 1e-4
    assert np.abs(logits - t_logits).max() <= 1e-4 and np.abs(bird_logits - t_bird).max() <= 1e-4
    assert np.abs(ref_logits).max() > 1.0 and np.abs(ref_logits[1:] - ref_logits[0]).max() > 0.05
    # issue 34: both converters give the class token as `features`, and it is timm's
    _, _, ref_features = timm_reference(ckpt, bird, SHALLOW, features=True)(x)
    free_features = OnnxClassifier(free, size=182).classify(x).features
    torch_features = OnnxClassifier(torch_made, size=182).classify(x).features
    assert free_features.shape == torch_features.shape == (6, SHALLOW["embed_dim"])
    assert np.abs(free_features - ref_features).max() <= 1e-4 and np.abs(torch_features - ref_features).max() <= 1e-4


def test_position_table_resampled_as_timm_does(official):
    torch = pytest.importorskip("torch")
    from timm.layers import resample_abs_pos_embed

    from deepfaune_plugin.models.convert.vit import resample_table

    _, ckpt, _ = official
    state = read_classifier(ckpt).state_dict
    table = state["pos_embed"]
    expected = resample_abs_pos_embed(torch.from_numpy(table.copy()), new_size=[13, 13], old_size=[37, 37],
                                      num_prefix_tokens=1).numpy()
    got = resample_table(table, vit_shape(state, "cls.pt"), 13)
    assert got.shape == (1, 170, SHALLOW["embed_dim"]) and np.abs(got - expected).max() <= 1e-5


def test_dinov3_with_rotary_positions_and_register_tokens_matches_timm(tmp_path: Path):
    """DeepFaune 1.5: timm's Eva layout (gamma_1/2, 4 register tokens, no table, RoPE on the patch tokens)."""
    pytest.importorskip("timm")
    import official_checkpoints
    from test_export_classifier import timm_reference

    from deepfaune_plugin.engine.onnx_models import OnnxClassifier
    from deepfaune_plugin.models.convert.vit import convert_classifier
    from deepfaune_plugin.models.export.probes import probe_crops

    dinov3 = "vit_large_patch16_dinov3.lvd1689m"
    ckpt = official_checkpoints.write_classifier_checkpoint(tmp_path / "v3.pt", dinov3, 40, 224, seed=4,
                                                            global_pool="token", backbone_kwargs=SHALLOW)
    bird = official_checkpoints.write_bird_head(tmp_path / "b.pt", dim=SHALLOW["embed_dim"], hidden=256, seed=5)
    shape = vit_shape(read_classifier(ckpt).state_dict, "v3.pt")
    assert (shape.rope, shape.prefix, shape.table_grid) == (True, 5, 0)
    free = convert_classifier(ckpt, bird, tmp_path / "v3.onnx", 224)
    x = probe_crops(224, count=4, seed=9)
    ref_logits, ref_bird = timm_reference(ckpt, bird, SHALLOW, global_pool="token")(x)
    logits, bird_logits = OnnxClassifier(free, size=224)(x)
    assert np.abs(logits - ref_logits).max() <= 1e-4 and np.abs(bird_logits - ref_bird).max() <= 1e-4
    assert np.abs(ref_logits).max() > 1.0


def test_rope_tables_rotate_half_layout():
    from deepfaune_plugin.models.convert.vit import rope_tables

    cos, sin = rope_tables(14)
    assert cos.shape == sin.shape == (196, 64)
    assert np.allclose(cos[:, :32], cos[:, 32:]) and np.allclose(sin[:, :32], sin[:, 32:])  # repeated halves
    # patch (row 0, col 13): y = -1 + 1/14, x = 1 - 1/14; the first period is 1, so the angle is 2 pi y, 2 pi x
    assert np.isclose(np.arctan2(sin[13, 0], cos[13, 0]), 2 * np.pi * (-1 + 1 / 14) + 2 * np.pi)
    assert np.isclose(np.arctan2(sin[13, 16], cos[13, 16]), 2 * np.pi * (1 - 1 / 14) - 2 * np.pi)


@pytest.mark.slow
def test_full_size_vit_l14_torch_free_matches_timm(tmp_path):
    pytest.importorskip("torch")
    import official_checkpoints
    from test_export_classifier import timm_reference

    from deepfaune_plugin.engine.onnx_models import OnnxClassifier
    from deepfaune_plugin.models.convert.vit import convert_classifier
    from deepfaune_plugin.models.export.probes import probe_crops

    ckpt = official_checkpoints.write_classifier_checkpoint(tmp_path / "full.pt", DINOV2, 38, 182, seed=11)
    bird = official_checkpoints.write_bird_head(tmp_path / "bird.pt", seed=12)
    free = convert_classifier(ckpt, bird, tmp_path / "free.onnx", 182)
    x = probe_crops(182, count=4, seed=13)
    ref_logits, ref_bird = timm_reference(ckpt, bird, {})(x)
    logits, bird_logits = OnnxClassifier(free, size=182)(x)
    assert np.abs(logits - ref_logits).max() <= 1e-4 and np.abs(bird_logits - ref_bird).max() <= 1e-4
