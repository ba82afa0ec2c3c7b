"""`deepfaune store info|prune|clear`: see and clean the user's result store.

The model outputs it holds can be computed again, but a season's worth is hours of compute, so `clear` asks first
and `prune` says what it dropped.  The labels people gave in `deepfaune review` cannot be computed again: `info`
counts them, `prune` never touches them and `clear` keeps them unless asked by name (`--drop-labels`), and then
writes them to a CSV first."""
from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

from .errors import DeepfauneError
from .store import (ResultStore, StoreError, check_ours, clear_results, default_store_path, export_labels, prune,
                    store_files, store_info)

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class StoreCommandError(DeepfauneError):
    pass


def parse_size(text: str) -> int:
    """'500M', '2G', '1048576' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def add_store_parser(sub) -> None:
    p = sub.add_parser("store", help="show, prune or clear the result store (model outputs, people's labels)")
    ssub = p.add_subparsers(dest="store_cmd", required=True)
    where = dict(type=Path, default=None, help="the store file (default: the user's, in the user cache)")
    i = ssub.add_parser("info", help="where the store is, its size, entries and models fingerprints")
    i.add_argument("--store", **where)
    r = ssub.add_parser("prune", help="drop entries of other models, old ones, or the oldest beyond a size")
    r.add_argument("--store", **where)
    r.add_argument("--keep", action="append", default=[], metavar="FINGERPRINT",
                   help="keep only entries of this models fingerprint (a prefix from `store info`; repeatable)")
    r.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="drop entries stored more than DAYS days ago")
    r.add_argument("--max-size", type=parse_size, default=None, metavar="SIZE",
                   help="drop the oldest entries until the stored results fit in SIZE (e.g. 500M, 2G)")
    c = ssub.add_parser("clear", help="delete the stored model outputs (every result would be computed again); "
                                      "people's labels from `deepfaune review` are kept unless --drop-labels")
    c.add_argument("--store", **where)
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    c.add_argument("--drop-labels", action="store_true",
                   help="delete the people's labels too (they are written to a CSV first: see --labels-csv)")
    c.add_argument("--labels-csv", type=Path, default=None, metavar="CSV",
                   help="where --drop-labels saves the labels (default: beside the store, "
                        "<store>.labels-<date>.csv)")


def run_store_command(args) -> int:
    path = Path(args.store) if args.store else default_store_path()
    try:
        if args.store_cmd == "info":
            return _info(path)
        if args.store_cmd == "prune":
            return _prune(path, args)
        return _clear(path, args)
    except StoreError as err:  # names the file already
        raise StoreCommandError(str(err)) from None
    except (RuntimeError, OSError) as err:
        raise StoreCommandError(f"result store {path}: {err}") from err


def _info(path: Path) -> int:
    info = store_info(path)
    print(f"result store: {info.path}" + ("" if path.exists() else " (none yet)"))
    print(f"size: {_human(info.file_bytes)}, {info.entries} entries")
    if info.labels:
        print(f"people's labels (deepfaune review): {info.labels}; not a cache, nothing computes them again: "
              "`store clear` keeps them unless --drop-labels")
    for use in info.fingerprints:
        newest = datetime.fromtimestamp(use.newest).strftime("%Y-%m-%d %H:%M") if use.newest else "?"
        kept = (f"; features of {use.feature_crops} crops, {_human(use.feature_bytes)}" if use.feature_crops else "")
        print(f"  models {use.fingerprint[:16]}  {use.entries} entries, {_human(use.payload_bytes)}, newest {newest}"
              + kept)
    return 0


def _prune(path: Path, args) -> int:
    if not args.keep and args.older_than is None and args.max_size is None:
        raise StoreCommandError("store prune: say what to drop: --keep FINGERPRINT, --older-than DAYS "
                                "or --max-size SIZE")
    if not path.exists():
        print(f"result store {path}: none yet, nothing to prune")
        return 0
    store = ResultStore(path)
    try:
        dropped = prune(store, args.keep, args.older_than, args.max_size)
    finally:
        store.close()
    info = store_info(path)
    print(f"{dropped} entries dropped; {info.entries} left, {_human(info.file_bytes)} in {path}")
    return 0


def _clear(path: Path, args) -> int:
    files = store_files(path)
    if not files:
        print(f"result store {path}: none, nothing to clear")
        return 0
    check_ours(path)  # never delete a file that is not ours (a .ddb given by mistake)
    info = store_info(path)
    keep = info.labels > 0 and not args.drop_labels
    what = (f"{info.entries} model outputs" + (f" and {info.labels} people's labels" if args.drop_labels and
                                               info.labels else ""))
    kept = f"; keep the {info.labels} people's labels (--drop-labels deletes them too)" if keep else ""
    question = f"delete {what} from {path} ({_human(info.file_bytes)}){kept}"
    if not args.yes:
        if not sys.stdin.isatty():
            raise StoreCommandError(f"store clear: would {question}; add --yes to confirm without a terminal")
        answer = input(f"{question}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 1
    if keep:
        store = ResultStore(path)
        try:
            dropped = clear_results(store)
        finally:
            store.close()
        print(f"{dropped} model outputs deleted; {info.labels} people's labels kept in {path}")
        return 0
    if info.labels:
        target = args.labels_csv or path.with_name(f"{path.name}.labels-{datetime.now():%Y%m%d-%H%M%S}.csv")
        saved = export_labels(path, target)
        print(f"{saved} people's labels saved to {target}")
    for f in files:
        f.unlink()
    print(f"deleted {path}")
    return 0
