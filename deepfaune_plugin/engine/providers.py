"""Which ONNX Runtime execution provider runs the models: the user's --device, checked against what the
installed onnxruntime offers and against what a session really started with.

Why a module of its own: onnxruntime silently runs on CPU when a GPU provider cannot start (missing CUDA
libraries, an old driver), and two onnxruntime distributions in one environment overwrite each other's files
without a word. A user who asked for a GPU must be told, once and plainly, what runs instead and why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Iterable, Sequence

import onnxruntime as ort

from ..errors import BackendError

CPU = "CPUExecutionProvider"
#: --device name -> onnxruntime provider.
PROVIDERS: dict[str, str] = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
#: What `auto` may pick besides the CPU. OpenVINO is not among them: on a 2-core CPU its models ran ~20 % faster
#: per call, but a run took 3.3x the memory (6 GB), 5 s more to load, longer in all on 20 images, and its logits
#: are not the CPU provider's bit for bit (benchmarks/RESULTS.md, issue 20): it runs only when asked.
AUTO_ORDER: tuple[str, ...] = ("cuda", "directml", "coreml")
DEVICES: tuple[str, ...] = ("auto", *PROVIDERS)
ENV_DEVICE = "DEEPFAUNE_DEVICE"
#: The distribution that provides each device's provider (what `pip install 'deepfaune-plugin[EXTRA]'` brings).
EXTRAS = {"cuda": ("gpu", "onnxruntime-gpu"), "directml": ("directml", "onnxruntime-directml"),
          "openvino": ("openvino", "onnxruntime-openvino"), "coreml": (None, "onnxruntime")}
#: Every distribution that installs the `onnxruntime` package; two of them in one environment overwrite
#: each other's files, and which provider works then depends on the order they were installed in.
RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                         "onnxruntime-silicon", "onnxruntime-qnn", "onnxruntime-training", "ort-nightly",
                         "ort-nightly-gpu")


class DeviceError(BackendError):
    """A device that was asked for by name and cannot be used; the message says how to get it."""


@dataclass(frozen=True)
class DeviceChoice:
    """The providers a session is opened with, and why: `note` is the one line a user sees when the choice
    is not simply what they asked for."""

    requested: str  # what the user asked: auto, cpu, cuda, ...
    device: str  # what was chosen
    providers: tuple[str, ...]  # for onnxruntime, best first, CPU last as its own fallback
    note: str = ""
    strict: bool = False  # asked by name: a failure to start it is an error, not a fallback

    @property
    def provider(self) -> str:
        return self.providers[0]

    def fallback(self, why: str) -> "DeviceChoice":
        return DeviceChoice(self.requested, "cpu", (CPU,),
                            f"device {self.requested}: {why}; running on the CPU instead")


def requested_device(value: str | None = None) -> str:
    """The device asked for: the option, else DEEPFAUNE_DEVICE, else auto; an unknown name is refused."""
    name = (value or os.environ.get(ENV_DEVICE) or "auto").strip().lower()
    if name not in DEVICES:
        origin = "--device" if value else ENV_DEVICE
        raise DeviceError(f"{origin}: unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    return name


def _install_hint(device: str) -> str:
    extra, dist = EXTRAS.get(device, (None, None))
    if device == "coreml":
        return "CoreML comes with onnxruntime on macOS only"
    return (f"install it with: pip uninstall -y onnxruntime && pip install 'deepfaune-plugin[{extra}]' "
            f"(the extra brings {dist}; see docs/devices.md)")


def choose_device(requested: str, available: Sequence[str] | None = None) -> DeviceChoice:
    """The providers for `requested` among `available` (default: what this onnxruntime offers)."""
    available = list(ort.get_available_providers() if available is None else available)
    version = getattr(ort, "__version__", "?")
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu", (CPU,))
    if requested == "auto":
        for device in AUTO_ORDER:
            if PROVIDERS[device] in available:
                return DeviceChoice("auto", device, (PROVIDERS[device], CPU))
        gpus = ", ".join(p for p in available if p != CPU) or "none"
        return DeviceChoice("auto", "cpu", (CPU,),
                            f"device auto: onnxruntime {version} offers no GPU provider (it has: {gpus}); "
                            "running on the CPU (docs/devices.md says how to use a GPU)")
    provider = PROVIDERS[requested]
    if provider not in available:
        raise DeviceError(f"--device {requested}: onnxruntime {version} here has no {provider} "
                          f"(it offers {', '.join(available)}); {_install_hint(requested)}")
    return DeviceChoice(requested, requested, (provider, CPU), strict=True)


def check_started(choice: DeviceChoice, started: Sequence[str], model: str) -> DeviceChoice:
    """The choice after a session opened: onnxruntime drops a provider that fails to start (and only logs
    it), so what the session really runs on is read back from it."""
    if choice.provider == CPU or choice.provider in started:
        return choice
    why = f"onnxruntime could not start {choice.provider} for {model} (its CUDA/driver libraries are missing " \
          "or too old?)" if choice.device == "cuda" else f"onnxruntime could not start {choice.provider} for {model}"
    if choice.strict:
        raise DeviceError(f"--device {choice.requested}: {why}; run with --device cpu, or fix the install "
                          "(docs/devices.md)")
    return choice.fallback(why)


def provider_options(choice: DeviceChoice) -> list[dict[str, str]]:
    """Per-provider options, in the order of `choice.providers`. CUDA: no TF32, so that its matrix products
    keep fp32 precision and answers stay within the CPU path's float tolerance."""
    options = []
    for provider in choice.providers:
        if provider == "CUDAExecutionProvider":
            options.append({"use_tf32": "0", "cudnn_conv_algo_search": "DEFAULT"})
        elif provider == "OpenVINOExecutionProvider":
            options.append({"device_type": "CPU", "precision": "FP32"})
        else:
            options.append({})
    return options


@dataclass(frozen=True)
class RuntimeInstall:
    """What is installed: the onnxruntime distributions and the providers the imported one offers."""

    version: str
    providers: tuple[str, ...]
    distributions: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (name, version)

    @property
    def conflict(self) -> str:
        """One line when two onnxruntime distributions share this environment, else ''."""
        if len(self.distributions) < 2:
            return ""
        names = ", ".join(f"{n} {v}" for n, v in self.distributions)
        keep = next((n for n, _ in self.distributions if n != "onnxruntime"), self.distributions[-1][0])
        return (f"onnxruntime is installed {len(self.distributions)} times ({names}): they overwrite each other's "
                f"files and which device works depends on install order; fix: pip uninstall -y "
                f"{' '.join(n for n, _ in self.distributions)} && pip install {keep}")

    def describe(self) -> str:
        names = ", ".join(p.removesuffix("ExecutionProvider") for p in self.providers)
        auto = choose_device("auto", self.providers)
        return f"onnxruntime {self.version} (providers: {names}; --device auto uses {auto.device})"


def runtime_distributions(dists: Iterable | None = None) -> tuple[tuple[str, str], ...]:
    found = {}
    for dist in metadata.distributions() if dists is None else dists:
        name = (dist.metadata["Name"] if "Name" in dist.metadata else "").lower().replace("_", "-")
        if name in RUNTIME_DISTRIBUTIONS:
            found[name] = dist.version
    return tuple(sorted(found.items(), key=lambda kv: RUNTIME_DISTRIBUTIONS.index(kv[0])))


def runtime_install() -> RuntimeInstall:
    return RuntimeInstall(getattr(ort, "__version__", "?"), tuple(ort.get_available_providers()),
                          runtime_distributions())
