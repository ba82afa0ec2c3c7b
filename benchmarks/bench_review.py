"""How `deepfaune review` scales: a season of N small JPEGs (default 100,000) run once with a stand-in backend
whose outputs go to a result store, then the review opened on it: the time to open (reading every file once to
know its content, the store lookups, deciding, the queue), one page, one label given, the batch filter over every sequence, a
batch of `--batch` files labelled then undone, and the memory it holds.
The review is opened `--opens` times (default 2): the first reads every file whose content the store has not
seen at that path; the second, with nothing changed, only stats them.  `--rerun` also times `deepfaune run`
again on the season (a re-decision: everything comes from the store); `--evaluate` times `deepfaune evaluate` on
it, after the label given (every file re-decided at each of its 11 thresholds).

    python benchmarks/bench_review.py --files 100000 --work /tmp/bench-review

Nothing is timed in the tests; the figures go to benchmarks/RESULTS.md by hand."""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.bulk import kept_for_the_block
from deepfaune_plugin.pipeline import resolve_host, run
from deepfaune_plugin.review.session import ReviewSession
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.testing import StoredLogitsBackend, registry_with, run_cli


def make_season(root: Path, files: int, per_folder: int = 1000) -> None:
    buf = Path(root / "tmp.jpg")
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(buf, "JPEG")
    data = buf.read_bytes()
    buf.unlink()
    for i in range(files):
        folder = root / f"st{i // per_folder:03d}"
        folder.mkdir(exist_ok=True)
        # different bytes per file (the store keys by content): a comment segment after SOI
        tag = f"file {i}".encode()
        (folder / f"IMG_{i % per_folder:04d}.JPG").write_bytes(
            data[:2] + b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag + data[2:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-review"))
    ap.add_argument("--opens", type=int, default=2, help="times the review is opened (the last one is measured)")
    ap.add_argument("--batch", type=int, default=10_000, help="files one batch labels (then undone)")
    ap.add_argument("--rerun", action="store_true", help="also time a second `run` (re-decision from the store)")
    ap.add_argument("--evaluate", action="store_true", help="also time `deepfaune evaluate` after the label")
    args = ap.parse_args()
    src, store = args.work / "season", args.work / "store.sqlite"
    logits = [0.0] * 38
    logits[5] = 3.0  # one class ahead, well under the threshold: every sequence is in the queue
    backend = StoredLogitsBackend(default=logits)
    registry = registry_with(backends=[backend])
    settings = RunSettings(backend="logits", lang="en")
    if not src.exists():
        t = time.perf_counter()
        make_season(src, args.files)
        print(f"made {args.files} files in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        run(src, settings, registry=registry, store=store, progress=False, report=False, keep_results=False,
            log=lambda m: None)
        print(f"first run (stand-in backend): {time.perf_counter() - t:.1f} s")
    if args.rerun:
        t = time.perf_counter()
        run(src, settings, registry=registry, store=store, progress=False, report=False, keep_results=False,
            log=lambda m: None)
        print(f"run again (re-decision from the store): {time.perf_counter() - t:.1f} s")
    host = resolve_host(registry, "auto", src)
    opens = []
    for _ in range(max(1, args.opens)):
        if opens:
            session.store.close()
        t = time.perf_counter()
        session = ReviewSession.open(src, host, backend, settings, ResultStore(store, shared=True),
                                     {"output": None}, args.work / "thumbs", "bench", log=lambda m: None)
        opens.append(time.perf_counter() - t)
    opened = opens[-1]
    served = kept_for_the_block()  # as `deepfaune review` serves the session (review/cli.py)
    served.__enter__()
    t = time.perf_counter()
    page = session.page(0)
    paged = time.perf_counter() - t
    files = [f["f"] for f in page["sequences"][0]["files"]]
    t = time.perf_counter()
    session.set_labels(files, "fox")
    labelled = time.perf_counter() - t
    t = time.perf_counter()
    session.thumbnail(page["sequences"][0]["files"][0]["id"])
    thumb = time.perf_counter() - t
    t = time.perf_counter()
    everything = session.select({})  # the batch filter over every sequence of the season
    selected = time.perf_counter() - t
    rels = [rel for seq in session.sequences for rel in session._labellable(seq)][:args.batch]
    t = time.perf_counter()
    done = session._apply_batch([(rel, "badger") for rel in rels], 0, 0, "badger")  # what batch_label writes
    batched = time.perf_counter() - t
    t = time.perf_counter()
    undone = session.undo()
    undid = time.perf_counter() - t
    assert done["files"] == undone["restored"] == len(rels)
    print(f"batch filter over {everything['sequences']} sequences {selected * 1000:.0f} ms, a batch of {len(rels)} "
          f"files {batched:.2f} s, its undo {undid:.2f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(session.items)} files, {len(session.sequences)} sequences, {session.summary()['queue']} queued: "
          f"open {' then '.join(f'{o:.1f}' for o in opens)} s, page {paged * 1000:.0f} ms, label {labelled * 1000:.0f} ms, "
          f"first thumbnail {thumb * 1000:.0f} ms, peak RSS {rss:.0f} MB")
    served.__exit__(None, None, None)
    session.store.close()
    if args.evaluate:
        t = time.perf_counter()
        done = run_cli(["evaluate", str(src), "--store", str(store), "--backend", "logits",
                        "--output", str(args.work / "evaluation")], registry=registry)
        print(f"evaluate (exit {done.code}): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
