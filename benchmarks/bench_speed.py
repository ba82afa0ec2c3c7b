"""Speed against DeepFaune's own PyTorch pipeline, side by side on the same images and weights (issue 10).

    python benchmarks/bench_speed.py --images 50 [--threads 2 1] [--workdir /tmp/dfspeed] [--skip-fast]
                                     [--device cpu cuda openvino ...] [--only-ours]

Needs the export extra (torch, timm, ultralytics, torchvision).  Steps, all in one run:
1. N generated 12-MP JPEGs (benchmarks/bench_run.py: 60 % empty, 40 % one red "animal" marker);
2. DeepFaune 1.4's four official files with random weights (speed_models.py: the DF detector gets a
   marker head on its real YOLOv8s compute, the MegaDetector stand-in keeps nothing), installed with
   `deepfaune models install --from` (ONNX export + parity + int8 classifier) and
   `deepfaune models quantize` (int8 detectors for --fast);
3. the machine's fp32 GEMM peak (onnxruntime MatMul, numpy) and each model's FLOPs (counted on its graph);
4. R1 = DeepFaune 1.4.1's code path as shipped (speed_reference.py), R2 = the same with torch's thread
   count restored, ours = the real `deepfaune run` on the exported models (fp32), ours --fast;
   each in a fresh process, peak RSS from its rusage; then the models alone on the same inputs;
5. agreement: ours fp32 against R1 (label, score, box of every file), --fast against fp32.
6. with --device: ours fp32 on each other execution provider, and its agreement with ours fp32 on the CPU
   (issue 20). --only-ours skips steps 2's export and 4's references and uses WORKDIR/models as a
   previous run left it: what a venv without torch (onnxruntime-openvino, onnxruntime-gpu) can run.
Prints a Markdown report (also written to WORKDIR/speed-report.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from bench_run import make_images  # noqa: E402

DEEPFAUNE = str(Path(sys.executable).parent / "deepfaune")
PROBE = ("import resource, subprocess, sys, time; t = time.monotonic(); "
         "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
         "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def load_average() -> float:
    return os.getloadavg()[0]


def wait_quiet(limit: float = 1.5, patience: float = 60.0) -> float:
    """Wait (a while) for the machine to calm down; return the 1-minute load we measured under."""
    t = time.monotonic()
    while load_average() > limit and time.monotonic() - t < patience:
        time.sleep(5)
    return load_average()


def timed_child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a command run as the only child of a fresh process."""
    print(f"[{time.strftime('%H:%M:%S')}] load {load_average():.2f}: {' '.join(cmd[1:4])} ...", file=sys.stderr, flush=True)
    res = subprocess.run([sys.executable, "-c", PROBE, *cmd], check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    wall, rss = res.stdout.split()
    return float(wall), int(rss) / 1024


# ---------------------------------------------------------------- machine peak and model FLOPs

def gemm_peak(threads: int, n: int = 2048, repeat: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of an n x n x n MatMul: onnxruntime (same session settings as ours) and numpy."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from deepfaune_plugin.engine.onnx_models import session_options

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    sess.run(None, {"a": a, "b": a})
    best = min(_clock(lambda: sess.run(None, {"a": a, "b": a})) for _ in range(repeat))
    flop = 2.0 * n ** 3
    out = {"onnxruntime": flop / best / 1e9}
    try:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(threads):
            a @ a
            out["numpy"] = flop / min(_clock(lambda: a @ a) for _ in range(repeat)) / 1e9
    except ImportError:
        pass
    return out


def _clock(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def count_flops(path: Path, shapes: dict[str, list[int]]) -> float:
    """FLOPs (2 per multiply-add) of Conv, MatMul and Gemm nodes for fixed input shapes."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, shapes[inp.name]):
                d.ClearField("dim_param")
                d.dim_value = v
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    model = shape_inference.infer_shapes(model, data_prop=True)
    known = dict(inits)
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            known[vi.name] = tuple(d.dim_value for d in dims)
    total = 0.0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w = known.get(node.input[3 if node.op_type == "QLinearConv" else 1])
            out = known.get(node.output[0])
            if w and out:
                total += 2.0 * np.prod(out) * np.prod(w[1:])
        elif node.op_type in ("MatMul", "MatMulInteger", "Gemm"):
            a, b = known.get(node.input[0]), known.get(node.input[1])
            out = known.get(node.output[0])
            if a and b and out:
                k = a[-1] if not (node.op_type == "Gemm" and _attr(node, "transA")) else a[0]
                total += 2.0 * np.prod(out) * k
    return total


def _attr(node, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)


# ---------------------------------------------------------------- our side

def ours_cli(images: Path, models: Path, out: Path, threads: int, fast: bool, env: dict | None = None,
             device: str = "cpu") -> dict:
    cmd = [DEEPFAUNE, "run", str(images), "--models-dir", str(models), "--output", str(out), "--quiet",
           "--no-store", "--detector", "DFbsMDS", "--threads", str(threads), "--device", device]
    if fast:
        cmd.append("--fast")
    wall, rss = timed_child(cmd, env)
    return {"wall_s": wall, "peak_rss_mib": rss}


def ours_in_process(images: Path, models: Path, threads: int, fast: bool, device: str = "cpu") -> dict:
    """Model load time, time to first result and the run's own wall time (no CLI start-up) through the backend API."""
    from deepfaune_plugin.api import RunSettings
    from deepfaune_plugin.types import MediaItem
    from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend

    kwargs = {"fast": True} if fast else {}
    settings = RunSettings(models_dir=models, threads=threads, device=device, **kwargs)
    files = sorted(p for p in images.iterdir() if p.suffix.upper() == ".JPG")
    items = [MediaItem(path=p, relpath=p.name, group="") for p in files]
    t = time.monotonic()
    predictor = DeepFauneBackend().open(settings)
    load = time.monotonic() - t
    provider = predictor.info["device"]["provider"]
    stream = predictor.predict(iter(items))
    t1 = time.monotonic()
    raws = [next(stream)]
    first = time.monotonic() - t
    raws += list(stream)
    run = time.monotonic() - t1
    predictor.close()
    return {"load_s": load, "first_result_s": first, "run_s": run, "raws": raws, "provider": provider}


def compute_only(raws, images: Path, models: Path, threads: int, fast: bool, device: str = "cpu") -> dict:
    """The models alone, with our session settings, on the inputs the run gave them (nothing else running)."""
    from deepfaune_plugin.api import RunSettings
    from deepfaune_plugin.engine.crop import crop_rgb, normalise, resize_pillow, square_box
    from deepfaune_plugin.engine.imageio import read_image
    from deepfaune_plugin.hooks.deepfaune import DeepFaunePredictor

    kwargs = {"fast": True} if fast else {}
    p = DeepFaunePredictor(RunSettings(models_dir=models, threads=threads, device=device, **kwargs))
    df, mds = p._detector("DF"), p._detector("MDS")
    secs = {"DF": 0.0, "MDS": 0.0, "classifier": 0.0}
    calls = {"DF": 0, "MDS": 0, "classifier": 0}
    shape = None
    for raw in raws:
        image = read_image(images / raw.relpath)
        tensor, lb = df.prepare(image)
        shape = tensor.shape
        secs["DF"] += _clock(lambda: df.session.run(["output0"], {"images": tensor}))
        calls["DF"] += 1
        if not raw.detections or raw.detections[0].source == "MDS":
            secs["MDS"] += _clock(lambda: mds.session.run(["output0"], {"images": tensor}))
            calls["MDS"] += 1
        if raw.logits is not None:
            box = raw.detections[raw.selected].box
            crop = normalise(resize_pillow(crop_rgb(image, square_box(box, raw.width, raw.height)), p.crop_size)[None])
            secs["classifier"] += _clock(lambda: p.classifier.session.run(p.classifier._outputs, {"input": crop}))
            calls["classifier"] += 1
    files = {"DF": df.path, "MDS": mds.path, "classifier": p.classifier.path}
    p.close()
    return {"seconds": secs, "calls": calls, "input_shape": shape, "files": files}


# ---------------------------------------------------------------- answers

def r1_labels(r1: dict, classes: list[str], threshold: float = 0.8, temperature: float = 1.10) -> dict[str, tuple]:
    """Per-image (label, truncated score, animal box) from R1's raw outputs, by DeepFaune's image-level rule."""
    out = {}
    for name, e in r1["files"].items():
        if e["category"] == 0:
            out[name] = ("vide", 1.0, None)
        elif e["category"] != 1:
            out[name] = ({2: "humain", 3: "vehicule"}[e["category"]], 1.0, None)
        else:
            z = np.asarray(e["logits"], dtype=np.float32) / np.float32(temperature)
            prob = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            best = int(np.argmax(z))
            label = classes[best] if prob[best] >= threshold else "indéfini"
            out[name] = (label, int(prob[best] * 100) / 100, e["box"])
    return out


def compare_csv(table, reference: dict[str, tuple], sizes: dict[str, tuple[int, int]]) -> dict:
    """Files whose label, score or box differ between our CSV and R1's outputs."""
    diffs, max_box = [], 0.0
    for _, row in table.iterrows():
        label, score, box = reference[row["filename"]]
        if row["predictionbase"] != label or abs(float(row["scorebase"]) - score) > 1e-9:
            diffs.append((row["filename"], row["predictionbase"], row["scorebase"], label, score))
        if box is not None and row["bbox_x"] != "":
            w, h = sizes[row["filename"]]
            ours = np.array([float(row["bbox_x"]) * w, float(row["bbox_y"]) * h, float(row["bbox_width"]) * w,
                             float(row["bbox_height"]) * h])
            ref = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
            max_box = max(max_box, float(np.abs(ours - ref).max()))
    return {"files": len(table), "differ": diffs, "max_box_px": max_box}


def compare_raws(raws, r1: dict) -> dict:
    """Our raw outputs against R1's, file by file: category, selected box, logits, bird logits."""
    category = top1 = 0
    dbox = dlogit = dbird = 0.0
    for raw in raws:
        ref = r1["files"][raw.relpath]
        ours_cat = 0 if raw.selected is None else raw.detections[raw.selected].category
        category += ours_cat == ref["category"]
        if ours_cat and ref["category"]:
            dbox = max(dbox, float(np.abs(np.subtract(raw.detections[raw.selected].box, ref["box"])).max()))
        if raw.logits is not None and "logits" in ref:
            dlogit = max(dlogit, float(np.abs(raw.logits - np.asarray(ref["logits"])).max()))
            top1 += int(np.argmax(raw.logits) == np.argmax(ref["logits"]))
            if raw.bird_logits is not None:
                dbird = max(dbird, float(np.abs(raw.bird_logits - np.asarray(ref["bird_logits"])).max()))
    return {"files": len(raws), "same_category": category, "same_top1": top1, "max_abs_dbox_px": dbox,
            "max_abs_dlogit": dlogit, "max_abs_dbird_logit": dbird}


def agreement(fast_raws, fp32_raws, temperature: float = 1.10) -> dict:
    """--fast against fp32: same detection outcome, same top-1 class, max |delta probability|."""
    same_outcome = top1 = both = 0
    dprob = 0.0
    for a, b in zip(fast_raws, fp32_raws):
        same_outcome += (len(a.detections) > 0) == (len(b.detections) > 0)
        if a.logits is not None and b.logits is not None:
            both += 1
            pa, pb = (np.exp(x / temperature - (x / temperature).max()) for x in (a.logits, b.logits))
            pa, pb = pa / pa.sum(), pb / pb.sum()
            top1 += int(pa.argmax() == pb.argmax())
            dprob = max(dprob, float(np.abs(pa - pb).max()))
    return {"images": len(fp32_raws), "same_empty_or_not": same_outcome, "classified_by_both": both,
            "top1_agree": top1, "max_abs_dprob": dprob}


def device_agreement(device_raws, cpu_raws, threshold: float = 0.8, temperature: float = 1.10) -> dict:
    """Another provider against the CPU, both fp32: same category, same box, same top-1 and label, |delta logit|."""
    category = top1 = label = classified = 0
    dbox = dlogit = 0.0
    for a, b in zip(device_raws, cpu_raws):
        cat_a = 0 if a.selected is None else a.detections[a.selected].category
        cat_b = 0 if b.selected is None else b.detections[b.selected].category
        category += cat_a == cat_b
        if cat_a and cat_b:
            dbox = max(dbox, float(np.abs(np.subtract(a.detections[a.selected].box, b.detections[b.selected].box)).max()))
        if a.logits is not None and b.logits is not None:
            classified += 1
            dlogit = max(dlogit, float(np.abs(a.logits - b.logits).max()))
            top1 += int(a.logits.argmax() == b.logits.argmax())
            pa, pb = (np.exp(x / temperature - (x / temperature).max()) for x in (a.logits, b.logits))
            pa, pb = pa / pa.sum(), pb / pb.sum()
            label += int((pa.max() >= threshold) == (pb.max() >= threshold) and pa.argmax() == pb.argmax())
    return {"files": len(cpu_raws), "same_category": category, "classified": classified, "same_top1": top1,
            "same_label": label, "max_abs_dlogit": dlogit, "max_abs_dbox_px": dbox}


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1, 1])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dfspeed"))
    ap.add_argument("--skip-fast", action="store_true")
    ap.add_argument("--spin-check", action="store_true",
                    help="also run ours fp32 with onnxruntime's spinning threads on (DEEPFAUNE_ORT_SPINNING=1)")
    ap.add_argument("--skip-references", action="store_true", help="reuse R1/R2 results already in WORKDIR")
    ap.add_argument("--device", nargs="+", default=["cpu"],
                    help="execution providers to measure ours fp32 on (cpu always runs first, as the reference)")
    ap.add_argument("--only-ours", action="store_true",
                    help="no torch: skip the export and the references, use the models a previous run left in WORKDIR")
    args = ap.parse_args()
    devices = ["cpu"] + [d for d in args.device if d != "cpu"]
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    images = work / f"images-{args.images}"
    make_images(images, args.images)
    files = sorted(images.glob("*.JPG"))

    if args.only_ours:
        models = work / "models"
        if not (models / "deepfaune-models.json").exists():
            sys.exit(f"--only-ours: {models} has no models; run once without --only-ours (with torch) first")
    else:
        import speed_models

        pt = speed_models.write_checkpoints(work / "pt", files)
        models = speed_models.install_exports(pt, work / "models")
        if not args.skip_fast:
            speed_models.quantize_models(models, files)

    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}, load at start {load_average():.2f}"]
    import onnxruntime

    lines.append(f"onnxruntime {onnxruntime.__version__}, providers {', '.join(onnxruntime.get_available_providers())}")
    peak = {t: gemm_peak(t) for t in sorted(set(args.threads))}
    for t, p in peak.items():
        lines.append(f"fp32 GEMM peak, {t} thread(s): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in p.items()))

    from deepfaune_plugin.models.cards import load_card
    from deepfaune_plugin.models.installed import InstalledModels

    card = load_card("1.4")
    installed = InstalledModels(models)
    det_shape = [1, 3, 736, 960]
    flops = {"DF": count_flops(installed.file_for("1.4", "detector", mode="DF"), {"images": det_shape}),
             "MDS": count_flops(installed.file_for("1.4", "detector", mode="MDS"), {"images": det_shape}),
             "classifier": count_flops(installed.file_for("1.4", "classifier"), {"input": [1, 3, 182, 182]})}
    lines.append("model FLOPs per call: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP" for k, v in flops.items()))

    sizes = {}
    for f in files:
        from PIL import Image
        with Image.open(f) as im:
            sizes[f.name] = im.size
    classes = list(card.labels["fr"])
    rows = []
    results: dict = {}
    for threads in args.threads:
        for name, extra in () if args.only_ours else (("R1", []), ("R2", ["--restore-threads", str(threads)])):
            if name == "R1" and "R1" in results:
                continue
            out = work / f"{name}-{threads}.json"
            if not (args.skip_references and out.exists()):
                wait_quiet()
                wall, rss = timed_child([sys.executable, str(HERE / "speed_reference.py"), str(images), str(pt),
                                         str(out)] + extra)
            ref = json.loads(out.read_text())
            results[name if name == "R1" else f"R2-{threads}"] = ref
            rows.append((f"{name} (torch threads {ref['torch_threads_end']})", threads, ref["process_s"],
                         args.images / ref["wall_run_s"], ref["wall_run_s"], None, ref["load_s"],
                         ref["first_result_s"], ref["peak_rss_mib"],
                         f"detector+decode {ref['detector_s']:.1f} s, classifier {ref['classifier_s']:.1f} s "
                         f"({ref['animal_crops']} crops, MDS on {ref['mds_runs']})"))
        for device, fast in [(d, f) for d in devices
                             for f in ((False,) if args.skip_fast or d != "cpu" else (False, True))]:
            tag = ("ours --fast" if fast else "ours fp32") + ("" if device == "cpu" else f" on {device}")
            csv = work / f"ours-{'fast' if fast else 'fp32'}{'' if device == 'cpu' else '-' + device}-{threads}.csv"
            load = wait_quiet()
            cli = ours_cli(images, models, csv, threads, fast, device=device)
            inproc = ours_in_process(images, models, threads, fast, device)
            comp = compute_only(inproc["raws"], images, models, threads, fast, device)
            compute = sum(comp["seconds"].values())
            gflops = ", ".join(
                f"{k} {flops[k] * comp['calls'][k] / comp['seconds'][k] / 1e9:.0f} GFLOP/s"
                for k in comp["seconds"] if comp["calls"][k])
            per_call = ", ".join(f"{k} {1000 * comp['seconds'][k] / comp['calls'][k]:.0f} ms x {comp['calls'][k]}"
                                 for k in comp["seconds"] if comp["calls"][k])
            results[f"{tag}-{threads}"] = {"cli": cli, "compute": comp, "inproc": {k: v for k, v in inproc.items()
                                                                                 if k != "raws"}, "raws": inproc["raws"]}
            rows.append((tag, threads, cli["wall_s"], args.images / inproc["run_s"], inproc["run_s"], compute,
                         inproc["load_s"], inproc["first_result_s"], cli["peak_rss_mib"],
                         f"{inproc['provider']}; models alone {per_call}; {gflops}; "
                         f"wall/compute {inproc['run_s'] / compute:.2f}; load {load:.1f}"))

    if args.spin_check:
        for threads in args.threads:
            for spin in ("1", "0"):
                wait_quiet()
                cli = ours_cli(images, models, work / "spin.csv", threads, False, env={"DEEPFAUNE_ORT_SPINNING": spin})
                rows.append((f"ours fp32, spinning {'on' if spin == '1' else 'off'} (CLI)", threads, cli["wall_s"],
                             None, None, None, None, None, cli["peak_rss_mib"], "whole command"))

    import pandas as pd

    lines.append("")
    lines.append("| path | threads | process wall s | images/s (run) | run s | models' compute s | load s | "
                 "first result s | peak RSS MiB | notes |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append("| " + " | ".join("" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
                                       for v in r) + " |")
    ref = None if args.only_ours else r1_labels(results["R1"], classes)
    lines.append("")
    for threads in args.threads:
        for device in devices[1:]:
            agree = device_agreement(results[f"ours fp32 on {device}-{threads}"]["raws"],
                                     results[f"ours fp32-{threads}"]["raws"])
            lines.append(f"ours fp32 on {device} vs on cpu ({threads} threads): {agree}")
        if ref is None:
            continue
        csv = work / f"ours-fp32-{threads}.csv"
        cmp = compare_csv(pd.read_csv(csv, keep_default_na=False), ref, sizes)
        lines.append(f"ours fp32 ({threads} threads) vs R1: {cmp['files']} files, {len(cmp['differ'])} differ in "
                     f"label or score, max |delta box| {cmp['max_box_px']:.3f} px" +
                     (f"; differences: {cmp['differ'][:5]}" if cmp["differ"] else ""))
        lines.append(f"ours fp32 ({threads} threads) raw outputs vs R1: "
                     f"{compare_raws(results[f'ours fp32-{threads}']['raws'], results['R1'])}")
        if not args.skip_fast:
            agree = agreement(results[f"ours --fast-{threads}"]["raws"], results[f"ours fp32-{threads}"]["raws"])
            lines.append(f"ours --fast vs fp32 ({threads} threads): {agree}")
    report = "\n".join(lines)
    (work / "speed-report.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
