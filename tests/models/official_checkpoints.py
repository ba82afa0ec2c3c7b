"""Random-initialised checkpoints in DeepFaune's official formats, for tests and dry runs.

The classifier file is what DeepFaune publishes: {'args': {'backbone', 'num_classes'},
'state_dict': {'base_model.<timm key>': ...}, 'transform': <torchvision Compose>}. The transform is
pickled from stand-in classes whose module is torchvision's, so no torchvision is needed to write
it, and reading it back exercises the same path as the real file.
"""
from __future__ import annotations

import contextlib
import enum
import types
from pathlib import Path
from typing import Any, Iterator, Mapping

from deepfaune_plugin.models.export.deps import require, require_ultralytics
from torchfree_writer import swapped_modules

_TV = "torchvision.transforms.transforms"
_TVF = "torchvision.transforms.functional"


@contextlib.contextmanager
def _fake_torchvision() -> Iterator[types.SimpleNamespace]:
    """Stand-in torchvision modules in sys.modules while pickling, the real ones (if any) restored after."""
    root, pkg = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    root.__path__, pkg.__path__ = [], []
    tv, tvf = types.ModuleType(_TV), types.ModuleType(_TVF)

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

    class Resize:
        def __init__(self, size, interpolation):
            self.size, self.interpolation, self.max_size, self.antialias = size, interpolation, None, None

    class ToTensor:
        pass

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std, self.inplace = mean, std, False

    InterpolationMode.__module__, InterpolationMode.__qualname__ = _TVF, "InterpolationMode"
    tvf.InterpolationMode = InterpolationMode
    for cls in (Compose, Resize, ToTensor, Normalize):
        cls.__module__ = _TV
        cls.__qualname__ = cls.__name__
        setattr(tv, cls.__name__, cls)
    fake = {"torchvision": root, "torchvision.transforms": pkg, _TV: tv, _TVF: tvf}
    with swapped_modules(fake):
        yield types.SimpleNamespace(Compose=Compose, Resize=Resize, ToTensor=ToTensor, Normalize=Normalize,
                                    InterpolationMode=InterpolationMode)


def _smooth_table(torch, shape, prefix: int):
    """A position table like a trained one: smooth over the grid, of the size of patch embeddings."""
    _, tokens, dim = shape
    side = int(round((tokens - prefix) ** 0.5))
    coarse = torch.randn(1, dim, 5, 5)
    grid = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return torch.cat([torch.randn(1, prefix, dim), grid.flatten(2).transpose(1, 2)], dim=1)


def write_classifier_checkpoint(path: Path | str, backbone: str, num_classes: int, crop_size: int, seed: int = 0,
                                global_pool: str | None = None,
                                backbone_kwargs: Mapping[str, Any] | None = None) -> Path:
    """A random-initialised classifier checkpoint in DeepFaune's format."""
    torch, timm = require("torch"), require("timm")
    torch.manual_seed(seed)
    extra = {"global_pool": global_pool} if global_pool else {}
    model = timm.create_model(backbone, pretrained=False, num_classes=num_classes, dynamic_img_size=True,
                              **extra, **dict(backbone_kwargs or {}))
    with torch.no_grad():  # timm zero-initialises the head: give it weights so logits differ per class
        model.get_classifier().weight.normal_(0, 0.5)
        model.get_classifier().bias.normal_(0, 0.5)
        for name, param in model.named_parameters():  # timm's LayerScale starts at 1e-5: blocks would be no-ops
            if name.endswith(("ls1.gamma", "ls2.gamma", "gamma_1", "gamma_2")):
                param.uniform_(0.1, 0.4)
        table = getattr(model, "pos_embed", None)
        if table is not None:  # timm's init is ~0.02 noise; a trained table is smooth and matters
            table.copy_(_smooth_table(torch, table.shape, model.num_prefix_tokens))
    state = {f"base_model.{k}": v for k, v in model.state_dict().items()}
    with _fake_torchvision() as tv:
        transform = tv.Compose([
            tv.Resize(size=(crop_size, crop_size), interpolation=tv.InterpolationMode.BICUBIC),
            tv.ToTensor(),
            tv.Normalize(mean=torch.tensor([0.485, 0.456, 0.406]), std=torch.tensor([0.229, 0.224, 0.225])),
        ])
        args = {"backbone": backbone, "num_classes": num_classes, "lr": 1e-4, "epochs": 1}
        torch.save({"args": args, "state_dict": state, "transform": transform}, str(path))
    return Path(path)


def write_bird_head(path: Path | str, dim: int = 1024, hidden: int = 2048, classes: int = 8, seed: int = 0) -> Path:
    """A random bird head state_dict (Linear, BatchNorm1d with non-trivial statistics, GELU, Linear)."""
    torch = require("torch")
    g = torch.Generator().manual_seed(seed)
    state = {
        "bird_model.0.weight": torch.randn(hidden, dim, generator=g) * dim ** -0.5,
        "bird_model.0.bias": torch.randn(hidden, generator=g) * 0.1,
        "bird_model.1.weight": 1 + 0.1 * torch.randn(hidden, generator=g),
        "bird_model.1.bias": 0.1 * torch.randn(hidden, generator=g),
        "bird_model.1.running_mean": 0.1 * torch.randn(hidden, generator=g),
        "bird_model.1.running_var": 0.5 + torch.rand(hidden, generator=g),
        "bird_model.1.num_batches_tracked": torch.tensor(1000),
        "bird_model.4.weight": torch.randn(classes, hidden, generator=g) * hidden ** -0.5,
        "bird_model.4.bias": torch.randn(classes, generator=g) * 0.1,
    }
    torch.save(state, str(path))
    return Path(path)


def _calibrate_batchnorm(model, torch) -> None:
    """Set BatchNorm statistics from a few made-up scenes, so that random activations keep their scale.

    With PyTorch's default initialisation and unit running variances, activations shrink layer by
    layer to ~1e-7 at the head; every anchor then gets the same score, which tests nothing.
    """
    from deepfaune_plugin.engine.letterbox import letterbox

    from deepfaune_plugin.models.export.probes import probe_images

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration images
    model.train()
    with torch.no_grad():
        for image in probe_images(seed=100, sizes=((480, 640), (640, 480), (360, 640))):
            tensor, _ = letterbox(image, 640)
            model(torch.from_numpy(tensor))
    model.eval()


def write_detector_checkpoint(path: Path | str, cfg: str = "yolov8s.yaml", seed: int = 0,
                              score_bias: float = -4.0, score_spread: float = 0.5) -> Path:
    """A random ultralytics detector checkpoint with 3 classes (animal, person, vehicle), saved in fp16.

    ultralytics initialises class biases so that scores start near zero and all alike; `score_bias`
    and `score_spread` (std of the last class conv weights) make random weights produce a few boxes
    above usual thresholds, with distinct scores.
    """
    torch = require("torch")
    ultralytics = require_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=3, verbose=False)
    model.names = {0: "animal", 1: "person", 2: "vehicle"}
    _calibrate_batchnorm(model, torch)
    head = model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias.fill_(score_bias)
            branch[-1].weight.normal_(0, score_spread / branch[-1].weight[0].numel() ** 0.5)
    torch.save({"model": model.half(), "ema": None, "updates": None, "optimizer": None,
                "train_args": {"imgsz": 960, "task": "detect"}, "date": "2024-01-01T00:00:00",
                "version": ultralytics.__version__}, str(path))
    return Path(path)
