"""The plugin system: built-ins come through entry points, and an outside plugin runs end to end."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deepfaune_plugin import __version__
from deepfaune_plugin.cli import main
from deepfaune_plugin.plugins import PluginError, build_registry, new_plugin_manager

TOY_PLUGIN = textwrap.dedent('''
    """An outside plugin: a toy backend and a toy host, as another package would ship them."""
    import json
    from pathlib import Path

    import numpy as np

    from deepfaune_plugin.hookspecs import hookimpl
    from deepfaune_plugin.types import ANIMAL, PERSON, ClassTable, Detection, Manifest, MediaItem, RawResult

    CLASSES = ClassTable(
        version="toy-1", names={"en": ["cat", "dog", "bird"], "fr": ["chat", "chien", "oiseau"]},
        bird_names=None,
        non_animal={k: {"en": k, "fr": k + "-fr"} for k in ("human", "vehicle", "empty", "undefined")},
    )

    class ToyPredictor:
        classes = CLASSES
        info = {"backend": "toy", "standin": False}

        def predict(self, items):
            for item in items:
                text = item.path.read_text().strip()
                if text == "broken":
                    yield RawResult(relpath=item.relpath, failure="toy cannot read this")
                elif text == "person":
                    yield RawResult(relpath=item.relpath, width=10, height=10,
                                    detections=[Detection((0, 0, 5, 5), 0.9, PERSON)], selected=0)
                else:
                    logits = np.array([float(v) for v in text.split()], dtype=np.float32)
                    yield RawResult(relpath=item.relpath, width=10, height=10,
                                    detections=[Detection((1, 1, 9, 9), 0.95, ANIMAL)], selected=0, logits=logits)

        def close(self):
            pass

    class ToyBackend:
        name = "toy"
        description = "reads logits from text files"

        def open(self, settings):
            return ToyPredictor()

    class ToyHost:
        name = "toyhost"
        description = "a list.txt of files; writes toy-out.json"
        options = ()
        priority = 50

        def detect(self, source):
            return (Path(source) / "list.txt").is_file()

        def read(self, source, options):
            root = Path(source)
            names = (root / "list.txt").read_text().split()
            items = [MediaItem(path=root / n, relpath=n, group="") for n in names]
            return Manifest(root=root, items=items, host=self.name)

        def write(self, manifest, results, options):
            out = manifest.root / "toy-out.json"
            out.write_text(json.dumps({d.relpath: [d.prediction, d.score, d.seqnum, d.failure]
                                       for d in results.decisions}))
            return [out]

    @hookimpl
    def register_backends(register):
        register(ToyBackend())

    @hookimpl
    def register_hosts(register):
        register(ToyHost())
''')


@pytest.fixture
def toy_dist(tmp_path, monkeypatch) -> Path:
    """Install the toy plugin the way pip would: a module and a dist-info with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toyplugin.py").write_text(TOY_PLUGIN)
    info = site / "toy_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[deepfaune]\ntoy = toyplugin\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_are_loaded_through_entry_points():
    registry = build_registry(new_plugin_manager())
    assert registry.backends["deepfaune"].plugin == "deepfaune"
    assert registry.backends["deepfaune"].origin == f"deepfaune-plugin {__version__}"
    assert registry.hosts["folder"].origin == f"deepfaune-plugin {__version__}"
    # without entry points nothing is registered: the built-ins have no private path in
    assert build_registry(new_plugin_manager(load_entry_points=False)).backends == {}


def test_outside_plugin_runs_end_to_end(toy_dist, tmp_path, capsys):
    registry = build_registry(new_plugin_manager())
    assert registry.backends["toy"].origin == "toy-plugin 0.3"
    assert registry.hosts["toyhost"].plugin == "toy"
    src = tmp_path / "src"
    src.mkdir()
    # logits (2, 0, 0) with T=1: softmax 0.7870 -> "cat" when threshold 0.5, a person, a failure
    (src / "a.txt").write_text("2 0 0")
    (src / "b.txt").write_text("person")
    (src / "c.txt").write_text("broken")
    (src / "list.txt").write_text("a.txt b.txt c.txt")
    code = main(["run", str(src), "--backend", "toy", "--lang", "en", "--threshold", "0.5", "-q"], registry=registry)
    assert code == 3  # c.txt fails: the run finishes, and says some files have no result
    out = json.loads((src / "toy-out.json").read_text())  # --host auto picked the toy host
    assert out["a.txt"][:2] == ["cat", 0.78]
    assert out["b.txt"][:2] == ["human", 1.0]
    assert out["c.txt"][3] == "toy cannot read this"
    assert "toy-out.json" in capsys.readouterr().err


def test_plugins_command_lists_origin(toy_dist, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(toy_dist), os.environ.get("PYTHONPATH", "")]))
    deepfaune = Path(sys.executable).parent / "deepfaune"  # the console script pip installed
    res = subprocess.run([str(deepfaune), "plugins", "--json"], capture_output=True, text=True, env=env, check=True,
                         cwd=tmp_path)
    rows = {(r["kind"], r["name"]): r for r in json.loads(res.stdout)}
    assert rows[("backend", "toy")]["origin"] == "toy-plugin 0.3"
    assert rows[("host", "toyhost")]["plugin"] == "toy"
    assert rows[("host", "folder")]["origin"].startswith("deepfaune-plugin ")


def test_duplicate_names_are_refused(toy_dist, tmp_path):
    """The second plugin to claim a name is left out whole (reported), the first keeps it."""
    pm = new_plugin_manager()

    class Again:
        from deepfaune_plugin.hookspecs import hookimpl

        @hookimpl
        def register_backends(self, register):
            class B:
                name = "toy"
                description = ""

                def open(self, settings):
                    raise AssertionError

            register(B())

    pm.register(Again(), name="again")
    registry = build_registry(pm)
    assert registry.backends["toy"].plugin == "toy"
    assert [(b.name, b.origin, b.error) for b in registry.broken] == [
        ("again", "registered at run time", "plugin 'again' registers 'toy', already registered by plugin 'toy'")]


def test_incomplete_host_is_refused():
    pm = new_plugin_manager(load_entry_points=False)

    class Bad:
        from deepfaune_plugin.hookspecs import hookimpl

        @hookimpl
        def register_hosts(self, register):
            class H:
                name = "half"

                def detect(self, source):
                    return False

            register(H())

    pm.register(Bad(), name="bad")
    registry = build_registry(pm)
    assert "half" not in registry.hosts
    assert len(registry.broken) == 1 and "lacks read, write" in registry.broken[0].error


# --- issue 16 item 8: a broken outside plugin never breaks the tool ------------------------------------

BROKEN_PLUGIN = textwrap.dedent('''
    """An outside plugin whose import fails, as when its own dependency is missing."""
    import deepfaune_plugin
    raise ImportError("needs libfoo, which is not installed")
''')


def _install(site: Path, module: str, source: str, dist: str, version: str, entry: str) -> None:
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[deepfaune]\n{entry} = {module}\n")


@pytest.fixture
def broken_dist(toy_dist: Path) -> Path:
    """The toy plugin, and beside it a distribution whose entry point raises on import."""
    _install(toy_dist, "brokenplugin", BROKEN_PLUGIN, "broken-plugin", "1.0", "broken")
    return toy_dist


def _deepfaune(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(Path(sys.executable).parent / "deepfaune"), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_item16_8_a_plugin_whose_import_fails_is_reported_and_the_tool_goes_on(broken_dist, tmp_path,
                                                                               standin_models):
    said = ("deepfaune: warning: plugin 'broken' (broken-plugin 1.0) is not loaded: ImportError: needs libfoo, "
            "which is not installed (")
    version = _deepfaune(broken_dist, tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith(f"deepfaune-plugin {__version__}\nonnxruntime ")
    assert version.stderr.count(said) == 1 and "Traceback" not in version.stderr
    assert "brokenplugin.py, line 4)" in version.stderr  # where the plugin's code raised, for its author

    listed = _deepfaune(broken_dist, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    broken = rows[("broken", "broken")]
    assert broken["origin"] == "broken-plugin 1.0"
    assert broken["error"].startswith("ImportError: needs libfoo, which is not installed")
    assert rows[("backend", "toy")]["origin"] == "toy-plugin 0.3"  # the other outside plugin still loads
    assert rows[("host", "folder")]["origin"].startswith("deepfaune-plugin ")
    text = _deepfaune(broken_dist, tmp_path, "plugins")
    assert "broken   broken       from broken (broken-plugin 1.0): not loaded: ImportError: needs libfoo" in text.stdout

    src = tmp_path / "season"
    from imagegen import make_jpeg

    make_jpeg(src / "cam1" / "IMG_0001.JPG")
    ran = _deepfaune(broken_dist, tmp_path, "run", str(src), "--host", "folder", "--models-dir",
                     str(standin_models), "-q", "--output", str(tmp_path / "out.csv"))
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count(said) == 1 and (tmp_path / "out.csv").is_file()


def test_item16_8_a_plugin_whose_hook_raises_is_taken_back_whole():
    from deepfaune_plugin.hookspecs import hookimpl

    class HalfWay:
        @hookimpl
        def register_backends(self, register):
            class B:
                name = "halfway"

                def open(self, settings):
                    raise AssertionError

            register(B())

        @hookimpl
        def register_hosts(self, register):
            raise RuntimeError("cannot find its configuration file")

    pm = new_plugin_manager()
    pm.register(HalfWay(), name="halfway")
    registry = build_registry(pm)
    assert "halfway" not in registry.backends  # what it registered before failing is taken back
    assert {"folder", "timelapse", "camtrapr", "camtrapdp"} <= set(registry.hosts)
    (broken,) = registry.broken
    assert (broken.name, broken.origin) == ("halfway", "registered at run time")
    assert broken.error.startswith("RuntimeError: cannot find its configuration file (")
    with pytest.raises(PluginError, match="no backend named 'halfway' is registered .*plugin 'halfway' "
                                          r"\(registered at run time\) is not loaded: RuntimeError"):
        registry.backend("halfway")


def test_item16_8_a_host_option_that_clashes_is_left_out_not_fatal(capsys):
    from deepfaune_plugin.api import HostOption
    from deepfaune_plugin.hookspecs import hookimpl

    class Clash:
        @hookimpl
        def register_hosts(self, register):
            class H:
                name = "clash"
                options = (HostOption("output", "a second --output"), HostOption("clash-level", "fine"))

                def detect(self, source):
                    return False

                read = write = detect

            register(H())

    pm = new_plugin_manager()
    pm.register(Clash(), name="clash")
    with pytest.raises(SystemExit) as done:
        main(["--version"], registry=build_registry(pm))
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"deepfaune-plugin {__version__}\nonnxruntime ")
    assert "deepfaune: warning: host 'clash' (registered at run time): option 'output' left out" in captured.err


# --- issue 31 item 2: commands and options from plugins; the core names no host ---------------------------------

from deepfaune_plugin.api import (Command, Host, HostError, HostOption, Manifest, MediaItem, hookimpl,  # noqa: E402
                                  iter_media, result_table, write_table)
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli  # noqa: E402


class TaggedHost(Host):
    """A test plugin's host: a folder holding tagged.txt, whose files a person gave one label (--label-all, an
    option the host adds to `run` and `evaluate`)."""

    name = "tagged"
    description = "a folder holding tagged.txt (test plugin)"
    priority = 50
    labels_held = "give every file one label with --label-all LABEL"
    options = (HostOption("label-all", "the label a person gave every file", commands=("run", "evaluate"),
                          from_record=True),
               HostOption("tag-note", "a note for the run only"))

    def __init__(self):
        self.seen: list[dict] = []

    def detect(self, source):
        return (Path(source) / "tagged.txt").is_file()

    def read(self, source, options):
        self.seen.append(dict(options))
        items = [MediaItem(path=path, relpath=rel, group=str(Path(rel).parent.as_posix()))
                 for path, rel in iter_media(Path(source))]
        labels = {item.relpath: options["label_all"] for item in items} if options.get("label_all") else {}
        return Manifest.from_items(Path(source), items, human_labels=labels, host=self.name)

    def write(self, manifest, results, options):
        return [write_table(result_table(results), Path(manifest.root) / "tagged.csv")]


class TagPlugin:
    """What an outside package's plugin module holds: a host and a command of its own."""

    def __init__(self):
        self.host = TaggedHost()

    @hookimpl
    def register_hosts(self, register):
        register(self.host)

    @hookimpl
    def register_commands(self, register):
        register(Command("tag-count", "count the files of a tagged source", run=self.count,
                         add_arguments=self.arguments))

    @staticmethod
    def arguments(parser):
        parser.add_argument("source", type=Path)
        parser.add_argument("--suffix", default=".jpg")

    @staticmethod
    def count(args):
        if not (args.source / "tagged.txt").is_file():
            raise HostError(f"{args.source}: no tagged.txt here")
        print(f"{sum(1 for p in args.source.rglob('*') if p.suffix.lower() == args.suffix)} files")
        return 0


def test_issue31_a_plugin_adds_a_command_and_options_to_run_and_evaluate(tmp_path):
    import cv2
    import numpy as np

    src = tmp_path / "tagged"
    for station, shade in (("a", 40), ("b", 200)):
        (src / station).mkdir(parents=True)
        cv2.imwrite(str(src / station / "IMG_0001.JPG"), np.full((60, 80, 3), shade, np.uint8))
    (src / "tagged.txt").write_text("tagged by a person\n", encoding="utf-8")
    plugin = TagPlugin()
    backend = StoredLogitsBackend({"a/IMG_0001.JPG": logits_for("1.4", "fox", high=20.0),
                                   "b/IMG_0001.JPG": logits_for("1.4", "wolf", high=20.0)})
    registry = registry_with(plugin, backends=[backend])
    store = tmp_path / "results.sqlite"

    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", "--label-all", "fox",
                   "--tag-note", "first pass"], registry)
    assert ran.code == 0, ran.stderr
    assert (plugin.host.seen[-1]["label_all"], plugin.host.seen[-1]["tag_note"]) == ("fox", "first pass")
    assert (src / "tagged.csv").is_file()

    out = tmp_path / "evaluation"
    recorded = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--output", out], registry)
    assert recorded.code == 0 and "2 file(s) carry a human label" in recorded.stderr  # --label-all from the record
    (src / "deepfaune-run.json").unlink()  # no record: only the options given count
    bare = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--output", out], registry)
    assert bare.code == 1
    assert ("the source holds no human labels (tagged: give every file one label with --label-all LABEL)"
            in bare.stderr)
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--output", out,
                    "--label-all", "fox"], registry)
    assert done.code == 0, done.stderr
    assert plugin.host.seen[-1]["label_all"] == "fox" and backend.opened == 1  # stored outputs only
    assert "2 file(s) carry a human label" in done.stderr
    with open(out / "thresholds.csv", newline="", encoding="utf-8") as fh:
        at_50 = next(r for r in csv.DictReader(fh) if r["level"] == "sequence" and float(r["threshold"]) == 0.5)
    assert (at_50["labelled"], at_50["correct"], at_50["accuracy"]) == ("2", "1", "0.5")  # a fox right, b wrong
    wrong = run_cli(["evaluate", src, "--tag-note", "x"], registry)  # an option of run only
    assert wrong.code == 2 and "unrecognized arguments: --tag-note" in wrong.stderr

    counted = run_cli(["tag-count", src], registry)
    assert (counted.code, counted.stdout) == (0, "2 files\n")
    refused = run_cli(["tag-count", tmp_path], registry)
    assert refused.code == 1 and f"deepfaune: error: {tmp_path}: no tagged.txt here" in refused.stderr
    listed = run_cli(["--help"], registry)
    assert "tag-count" in listed.stdout and "count the files of a tagged source" in listed.stdout
    plugins = run_cli(["plugins", "--json"], registry)
    assert {"kind": "command", "name": "tag-count"}.items() <= next(
        r for r in json.loads(plugins.stdout) if r["name"] == "tag-count").items()


def test_issue31_a_command_that_clashes_or_breaks_is_left_out_and_the_rest_works():
    class Clashing:
        @hookimpl
        def register_commands(self, register):
            register(Command("run", "a second run", run=lambda args: 99))
            register(Command("explode", "arguments that fail", run=lambda args: 0,
                             add_arguments=lambda parser: 1 / 0))

    class NotACommand:
        @hookimpl
        def register_commands(self, register):
            register(type("Thing", (), {"name": "thing", "run": None})())

    registry = registry_with(Clashing(), NotACommand())
    listed = run_cli(["plugins"], registry)
    assert listed.code == 0
    assert ("command 'run' of plugin 'test-plugin-0' (registered at run time) left out: deepfaune has a command "
            "of that name") in listed.stderr
    assert "command 'explode' of plugin 'test-plugin-0' (registered at run time) is unusable (division by zero)" \
        in listed.stderr
    assert "plugin 'test-plugin-1' (registered at run time) is not loaded:" in listed.stderr
    assert "is not a deepfaune_plugin.api.Command" in listed.stderr
    assert run_cli(["run", "--help"], registry).code == 0  # the core's run, not the plugin's
    broken = run_cli(["explode"], registry)
    assert broken.code == 1 and "is unusable (division by zero)" in broken.stderr


def test_issue31_the_hosts_bring_their_options_to_run_review_and_evaluate():
    run_help = run_cli(["run", "--help"]).stdout
    for option in ("--write-ddb", "--labels-field", "--species-from-folders", "--fetch-remote"):
        assert option in run_help
    assert "--labels-field" in run_cli(["review", "--help"]).stdout
    evaluate_help = " ".join(run_cli(["evaluate", "--help"]).stdout.split())
    assert "--labels-field LABELS_FIELD [timelapse] the data field holding people's species labels" in evaluate_help
    assert "--species-from-folders [camtrapr] station tree" in evaluate_help
    assert "--write-ddb" not in evaluate_help and "--fetch-remote" not in evaluate_help


def test_issue31_a_host_option_for_a_command_that_does_not_take_options_is_refused_when_made():
    with pytest.raises(ValueError, match=r"HostOption 'label-all': commands must be a tuple of run, review, "
                                         r"evaluate; got \('run', 'evalute'\)"):
        HostOption("label-all", "a typo", commands=("run", "evalute"))
    with pytest.raises(ValueError, match="got 'evaluate'"):
        HostOption("label-all", "a string, not a tuple", commands="evaluate")
    assert HostOption("x", "fine", commands=("evaluate",)).commands == ("evaluate",)


def test_a_source_without_media_and_a_backend_that_cannot_describe_itself(tmp_path):
    """Issue 31.4 (found by mypy: `RunResults.classes` could be None): every run's results have a class table,
    so a source with no media and a backend without `describe` loads the models to learn it. It crashed before
    ('NoneType' object has no attribute 'version', a traceback) while writing the review page."""
    from deepfaune_plugin.testing import LogitsBackend, registry_with, run_cli

    src = tmp_path / "src"
    src.mkdir()
    result = run_cli(["run", src, "--backend", "logits", "--no-store", "-q"],
                     registry_with(backends=[LogitsBackend()]))
    assert result.code == 0, result.stderr
    assert "0 files, 0 sequences, 0 failed" in result.stderr
    record = json.loads((src / "deepfaune-run.json").read_text())
    assert record["models"]["class_table"] == "1.4"
    assert (src / "deepfaune-report.html").is_file()
    assert (src / "deepfaune.csv").read_text().startswith("filename,")
