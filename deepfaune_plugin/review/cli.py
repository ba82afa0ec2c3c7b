"""`deepfaune review SOURCE`: correct DeepFaune's labels in the browser; `--export` writes them back.

It takes every option of `deepfaune run`, because writing back *is* a run: every file's outputs are in the
result store (no model runs), the people's labels are laid over DeepFaune's decisions
(`corrections.overlay`), and the host writes its own files the way `deepfaune run` does (backups, atomic).
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
import webbrowser
from pathlib import Path

from ..bulk import kept_for_the_block
from ..cli_shared import EXIT_CODES_HELP, EXIT_INCOMPLETE, EXIT_OK, add_run_options, print_summary, run_settings
from ..errors import DeepfauneError
from ..plugins import PluginError, Registry


class ReviewCliError(DeepfauneError):
    pass


def add_review_parser(sub, registry: Registry) -> None:
    p = sub.add_parser("review", help="correct DeepFaune's labels in your browser (a local web app), then write "
                                      "them into the source's own files",
                       description="Open the review queue of SOURCE (sequences that are undefined, near the "
                                   "threshold, whose images disagree, or with suspect dates) in a local web app. "
                                   "Labels are kept in the result store as you give them; --export (or the page's "
                                   "Write back) writes them through the source's host, as `deepfaune run` with the "
                                   "same options would. Run `deepfaune run SOURCE` first.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, registry, "review")
    group = p.add_argument_group("review")
    group.add_argument("--reviewer", default=None,
                       help="your name, written with each label (where a host keeps who classified, e.g. a "
                            "classifiedBy column; default: your login)")
    group.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    group.add_argument("--no-browser", action="store_true", help="print the link instead of opening the browser")
    group.add_argument("--all", dest="show_all", action="store_true",
                       help="show every sequence, not only those that need a look")
    group.add_argument("--order", choices=("queue", "learn"), default="queue",
                       help="queue: the sequences in their order (default); learn: those whose label teaches the "
                            "most first: DeepFaune least sure, and among as unsure, least like what people "
                            "labelled (cosine on the classifier's features kept in the result store); "
                            "ordered again as labels come, for the pages not shown yet")
    group.add_argument("--adapted", metavar="NAME", default=None,
                       help="the site head NAME made by `deepfaune adapt` decides the queue and the export (from "
                            "the stored features; no model runs); default: DeepFaune's head")
    group.add_argument("--export", action="store_true",
                       help="write the labels given so far into the source's files and exit (no web app)")
    group.add_argument("--import", dest="import_csv", type=Path, default=None, metavar="CSV",
                       help="first keep the labels of this CSV (columns file, label, and any of count, sex, "
                            "life_stage, behaviour, individual, comment, reviewer; labels in any language of the "
                            "model or scientific names), as if given in the app; rows that cannot be taken are "
                            "refused with their line and why, the others kept")


def reviewer_name(given: str | None) -> str:
    name = (given or os.environ.get("DEEPFAUNE_REVIEWER") or _login()).strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise ReviewCliError(f"--reviewer {name!r}: give a name of 1 to 200 printable characters")
    return name


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def run_review_command(args: argparse.Namespace, registry: Registry, ready=None) -> int:
    """`ready(server)`, when given, is called once the server listens (tests drive a browser from there and
    stop it with `server.server.shutdown()`)."""
    from ..inference import open_store
    from ..models.installed import user_cache_dir
    from ..pipeline import resolve_host, run
    from ..recorded import take_run_options
    from ..store import default_store_path
    from ..transaction import FolderLock, LockedError
    from .server import ReviewApp, ReviewServer, check_port, new_token
    from .session import ReviewSession, thumbs_folder

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    check_port(args.port)
    if not args.source.exists():
        raise ReviewCliError(f"{args.source}: no such file or folder")
    try:
        args.argv = [*args.argv, *take_run_options(args, registry, log=log)]  # the export's record keeps them
    except ValueError as err:
        raise ReviewCliError(str(err)) from err
    settings, host_options = run_settings(args)
    reviewer = reviewer_name(args.reviewer)
    if args.no_store:
        raise ReviewCliError("review keeps its labels in the result store: drop --no-store")
    store_path = args.store or default_store_path()
    try:
        host = resolve_host(registry, args.host, args.source)
        backend = registry.backend(settings.backend)
    except PluginError as err:
        raise ReviewCliError(str(err)) from err

    def export() -> list[str]:
        unwritten = host.labels_unwritten(dict(host_options, output=args.output))
        if unwritten:  # writing back would write none of the labels given: say what to add instead
            raise ReviewCliError(f"write back to {args.source}: {unwritten}")
        summary = run(args.source, settings, host=args.host, host_options=host_options, output=args.output,
                      registry=registry, progress=False, store=store_path, report=args.report,
                      blur_humans=args.blur_humans, command=["deepfaune", *args.argv], keep_results=False,
                      adapted=args.adapted)
        print_summary(summary)
        return [str(p) for p in summary.written + summary.review_files]

    refused = False
    if args.import_csv is not None:
        if not Path(store_path).is_file():
            raise ReviewCliError(f"result store {store_path}: none yet; run `deepfaune run {args.source}` first")
        refused = import_labels(args, registry, settings, dict(host_options, output=args.output), store_path,
                                reviewer)
    if args.export:
        if not Path(store_path).is_file():
            raise ReviewCliError(f"result store {store_path}: none yet; run `deepfaune run {args.source}` first")
        written = export()
        return EXIT_OK if written and not refused else EXIT_INCOMPLETE

    if not Path(store_path).is_file():
        raise ReviewCliError(f"result store {store_path}: none yet; run `deepfaune run {args.source}` first")
    thumbs = thumbs_folder(user_cache_dir(), args.source)
    thumbs.mkdir(parents=True, exist_ok=True)
    try:  # two reviews of one source would each show their own labels, and the store keep the last
        held = FolderLock(thumbs / ".review.lock", f"{args.source}")
    except LockedError as err:
        raise ReviewCliError(f"{args.source} is open in another `deepfaune review`; close it first (its lock "
                             f"file: {thumbs / '.review.lock'})") from err
    store = open_store(store_path, shared=True)  # served from the server's threads
    launcher = None
    try:
        options = dict(host_options, output=args.output)
        session = ReviewSession.open(args.source, host, backend, settings, store, options, thumbs, reviewer,
                                     args.show_all, log, blur_humans=args.blur_humans, order=args.order,
                                     adapted=args.adapted)
        server = ReviewServer(ReviewApp(session, new_token(), export), args.port)
        summary = session.summary()
        log(f"{summary['queue']} sequences to review; open {server.url}")
        if summary.get("without_features"):
            log(f"--order learn: {summary['without_features']} of them have no stored features (empty, failed, run "
                "with --no-features or by models that give none): they come last")
        log("(this link opens the review once; Ctrl-C stops it; labels are kept as you give them)")
        if ready is not None:
            ready(server)
        elif not args.no_browser:
            launcher = _launcher(server.url)  # the link never appears on a command line (`ps`)
            webbrowser.open(launcher.as_uri())
        try:
            with kept_for_the_block():  # the session lives as long as the server (bulk.py)
                server.serve_forever()
        except KeyboardInterrupt:
            log("stopped; the labels are kept in the result store: `deepfaune review --export` writes them")
        finally:
            server.stop()
    except OSError as err:
        raise ReviewCliError(f"cannot serve the review on 127.0.0.1:{args.port}: {err}") from err
    finally:
        store.close()
        held.release()
        if launcher is not None:
            launcher.unlink(missing_ok=True)
    return EXIT_INCOMPLETE if refused else EXIT_OK


def import_labels(args: argparse.Namespace, registry: Registry, settings, options: dict, store_path: Path,
                  reviewer: str) -> bool:
    """`--import CSV`: its labels kept in the store (one transaction); the summary said. True when rows were
    refused (the exit status then says the import was incomplete)."""
    from ..inference import Inference, open_store
    from ..pipeline import read_to_look, resolve_host
    from .imports import CorrectionsError, read_corrections

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        host = resolve_host(registry, args.host, args.source)
        backend = registry.backend(settings.backend)
    except PluginError as err:
        raise ReviewCliError(str(err)) from err
    store = open_store(store_path)
    try:
        inference = Inference(backend, settings, store, None, False, log)  # describes the classes; loads no model
        try:
            classes = inference.class_table()
        finally:
            inference.close()
        _, blocks = read_to_look(host, args.source, options, log)
        items = {item.relpath: item for block in blocks for item in block}
        try:
            found = read_corrections(args.import_csv, items, classes, reviewer, settings.bird)
        except CorrectionsError as err:
            raise ReviewCliError(str(err)) from err
        try:
            store.put_human(found.labels)
        except ValueError as err:  # a file that cannot be read now: nothing is kept
            raise ReviewCliError(f"{args.import_csv}: {err}; nothing was imported") from err
    finally:
        store.close()
    for line in found.summary(str(args.import_csv)):
        log(line)
    return bool(found.refused)


def _launcher(url: str) -> Path:
    """A page only this user can read (0600, as mkstemp makes it) that sends the browser to `url`."""
    fd, name = tempfile.mkstemp(prefix="deepfaune-review-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={url}">'
                 f'<title>DeepFaune review</title><a href="{url}">open the review</a>\n')
    return Path(name)
