"""Import rules of the house (issue 19), read from the source with `ast`, so anyone can run
`python -m pytest tests/test_architecture.py` before a review:

- the engine (pixels and ONNX sessions) imports no host, no hook and nothing about outputs;
- the core has no import cycle at module level, nor through the imports inside functions (lazy ones run too, just
  later), the few listed below aside; imports under `if TYPE_CHECKING:` never run and are not counted;
- the core names no host: host names and host options come from the hosts' own modules;
- plugins outside the core (examples/, plugins/) import only `deepfaune_plugin.api` and `deepfaune_plugin.testing`;
- the built-in hooks follow the same rule: what they import from the core beyond the api is an exception listed
  below by exact name with its reason (a new private import fails here); the DeepFaune backend alone runs the
  engine and reads the model files;
- `deepfaune_plugin.api` defines nothing: it re-exports, so every name a host needs is public in one place;
- plugin.yaml, what a host application reads, names the backends and hosts the registry really has.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "deepfaune_plugin"
HOOKS = REPO / "hooks"
MODELS = REPO / "models"  # installed as deepfaune_plugin.models (setuptools package-dir)
EXAMPLES = REPO / "examples"
PLUGINS = REPO / "plugins"  # separate distributions kept in this repository (the Wildlife Insights host)
PUBLIC = {"deepfaune_plugin.api", "deepfaune_plugin.testing"}

#: What the built-in hooks import from the core outside the api, by exact (module, name), each with its reason:
#: a name not listed here fails `test_built_in_hooks_import_the_core_only_through_the_api`. Never add one: put
#: the name in `deepfaune_plugin.api` (with its one-line doc) instead. Issue 31.1 emptied it (was: 10 whole
#: package prefixes, HOOK_DEBT, under which any new private import passed).
HOOK_EXCEPTIONS: dict[tuple[str, str], str] = {}
#: The DeepFaune backend runs the engine and reads the model files: that is its job, not an exception.
BACKEND = "deepfaune_plugin.hooks.deepfaune"
BACKEND_MAY_IMPORT = ("deepfaune_plugin.engine", "deepfaune_plugin.models")
#: Circles closed only by imports inside functions, as of issue 31. Remove an entry when it is untangled;
#: never add one (move the shared piece into a module both import).
LAZY_CYCLE_DEBT = [
    {"deepfaune_plugin.models.export.half", "deepfaune_plugin.models.export.install",
     "deepfaune_plugin.models.export.quantize"},
]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("hooks", "models"):
        parts[0:1] = ["deepfaune_plugin", parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, top_level_only: bool = False, run_only: bool = False) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved against its package); `run_only`:
    not those under `if TYPE_CHECKING:`, which never run."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if run_only:
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for stmt in block.body for n in ast.walk(stmt)}
        nodes = [n for n in nodes if id(n) not in typing_only]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            # `from . import x` / `from .pkg import mod` name modules too
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def known_modules() -> set[str]:
    return {module_name(p) for p in sources(CORE) + sources(HOOKS) + sources(MODELS)}


def core_imports(path: Path, top_level_only: bool = False, run_only: bool = False) -> set[str]:
    """The project's own modules `path` imports (names that are attributes, not modules, dropped)."""
    mods = known_modules()
    return {name for name in imports(path, top_level_only, run_only) if name in mods}


def import_circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The modules that import each other, directly or round a circle: the graph's strongly connected components
    of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, targets = work[-1]
            nxt = next((t for t in targets if t in graph), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    circles.append(members)
    return circles


def test_the_engine_imports_no_host_hook_or_output_module():
    allowed = ("deepfaune_plugin.engine", "deepfaune_plugin.errors", "deepfaune_plugin.types",
               "deepfaune_plugin.paths")  # opening a file safely is below every layer
    offenders = {module_name(p): sorted(m for m in core_imports(p) if not m.startswith(allowed))
                 for p in sources(CORE / "engine")}
    assert {m: bad for m, bad in offenders.items() if bad} == {}


def test_the_core_has_no_import_cycle_at_module_level():
    graph = {module_name(p): core_imports(p, top_level_only=True)
             for p in sources(CORE) + sources(HOOKS) + sources(MODELS)}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in path and len(path) < 12:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = {m: c for m in graph if (c := cycle_from(m))}
    assert cycles == {}, "import cycle: " + " -> ".join(next(iter(cycles.values())))


def test_no_import_circle_even_through_imports_inside_functions():
    """Issue 31: a lazy import hides a circle from the interpreter, not from the design. The circles named there
    (cli <-> evaluate_cli <-> review.cli, pipeline <-> writers, types <-> sequences) are gone, and no other may
    appear: shared pieces live in a module both import (`cli_shared`, `summary`)."""
    graph = {module_name(p): core_imports(p, run_only=True) for p in sources(CORE) + sources(HOOKS) + sources(MODELS)}
    circles = import_circles(graph)
    for pair in (("cli", "evaluate_cli"), ("cli", "review.cli"), ("evaluate_cli", "review.cli"),
                 ("pipeline", "writers"), ("types", "sequences")):
        a, b = (f"deepfaune_plugin.{m}" for m in pair)
        assert not any(a in c and b in c for c in circles), f"{a} and {b} import each other"
    assert [sorted(c) for c in circles if c not in LAZY_CYCLE_DEBT] == []
    assert [sorted(c) for c in LAZY_CYCLE_DEBT if c not in circles] == [], "untangled: remove from LAZY_CYCLE_DEBT"


def test_import_circles_finds_every_circle_and_only_circles():
    """The detector itself, on a graph whose circles are known: a-b-c round, d alone, e imports itself only."""
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a", "outside"}, "d": set(), "e": {"e"}}
    assert import_circles(graph) == [{"a", "b", "c"}]


def test_imports_under_type_checking_are_not_counted_as_run():
    """sequences names MediaItem for its type hints only: a static name, not an import that runs (and
    `types.Manifest.blocks` imports sequences when it runs)."""
    sequences = CORE / "sequences.py"
    assert "deepfaune_plugin.types" in core_imports(sequences)
    assert "deepfaune_plugin.types" not in core_imports(sequences, run_only=True)
    assert "deepfaune_plugin.pipeline" not in core_imports(CORE / "writers.py")  # not even for type hints


#: What names a host in the core's own code (string literals; docstrings and comments may cite them).
HOST_NAMES = ("timelapse", "camtrapr", "camtrapdp", "camtrap dp")


def test_the_core_names_no_host():
    """Issue 31: the hosts bring their own options and texts (`HostOption.commands`, `Host.labels_held`); the
    core's code (deepfaune_plugin/*.py, review/, report/) has no string that names one."""
    files = sorted(CORE.glob("*.py")) + sources(CORE / "review") + sources(CORE / "report")
    named = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        named += [f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and any(host in node.value.lower() for host in HOST_NAMES)]
    assert named == []


@pytest.mark.parametrize("folder", [EXAMPLES, PLUGINS], ids=["examples", "plugins"])
def test_examples_import_only_the_public_api(folder):
    files = sources(folder)
    assert files, f"{folder.name}/ holds plugin packages"
    private = {str(p.relative_to(REPO)): sorted(n for n in imports(p) if n.startswith("deepfaune_plugin")
                                                and not any(n == m or n.startswith(m + ".") for m in PUBLIC))
               for p in files}
    assert {f: names for f, names in private.items() if names} == {}


def private_imports(source: str, package: str) -> set[tuple[str, str]]:
    """(module, name) of each core name `source` imports outside the public modules: `from m import a` gives
    (m, a), `import m` gives (m, ""); `package` resolves relative imports; the hooks' own modules are theirs."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            pairs = [(module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in pairs:
            full = f"{module}.{name}" if name else module
            if module.partition(".")[0] != "deepfaune_plugin" or module in PUBLIC or full in PUBLIC:
                continue
            if module.startswith("deepfaune_plugin.hooks") or full.startswith("deepfaune_plugin.hooks"):
                continue
            found.add((module, name))
    return found


def hook_package(path: Path) -> str:
    return module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]


def hooks_private_imports() -> dict[tuple[str, str], set[str]]:
    """Each private (module, name) the built-in hooks import -> the hooks that do (the backend's own allowance
    left out)."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in sources(HOOKS):
        mine = module_name(path)
        for module, name in private_imports(path.read_text(encoding="utf-8"), hook_package(path)):
            if mine == BACKEND and module.startswith(BACKEND_MAY_IMPORT):
                continue
            found.setdefault((module, name), set()).add(mine)
    return found


def test_built_in_hooks_import_the_core_only_through_the_api():
    new = {f"{module}.{name}": sorted(users) for (module, name), users in hooks_private_imports().items()
           if (module, name) not in HOOK_EXCEPTIONS}
    assert new == {}, "go through deepfaune_plugin.api instead (or add what is missing to it)"


def test_the_exception_list_only_names_imports_that_still_exist():
    assert sorted(set(HOOK_EXCEPTIONS) - set(hooks_private_imports())) == [], "paid off: remove from HOOK_EXCEPTIONS"
    assert all(reason.strip() for reason in HOOK_EXCEPTIONS.values()), "each exception says why"


def test_a_new_private_import_is_caught_by_name():
    """The check itself: any core name outside the api is found, whatever form the import takes."""
    source = ("from deepfaune_plugin.transaction import FolderLock\n"
              "from deepfaune_plugin import __version__, api\n"
              "import deepfaune_plugin.taxonomy\n"
              "from ...placing import place_file\n"
              "from deepfaune_plugin.api import say\n"
              "from deepfaune_plugin.hooks.camtrapdp.schema import MISSING\n"
              "from . import create\n"
              "def later():\n"
              "    from deepfaune_plugin.engine.known_boxes import JSON_THRESHOLD\n")
    assert private_imports(source, "deepfaune_plugin.hooks.camtrapdp") == {
        ("deepfaune_plugin.transaction", "FolderLock"), ("deepfaune_plugin", "__version__"),
        ("deepfaune_plugin.taxonomy", ""), ("deepfaune_plugin.placing", "place_file"),
        ("deepfaune_plugin.engine.known_boxes", "JSON_THRESHOLD")}


def test_the_api_defines_nothing_it_only_re_exports():
    """Issue 31.1: the contracts live in `contracts`, the helpers where their job is done; the api imports them
    all (no lazy `__getattr__`), so nothing in the core needs to import the api and no cycle makes it lazy."""
    import deepfaune_plugin.api as api

    tree = ast.parse((CORE / "api.py").read_text(encoding="utf-8"))
    kinds = {type(node).__name__ for node in tree.body[1:]}
    assert kinds <= {"ImportFrom", "Assign"}, kinds
    assigned = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    assert assigned == ["__all__"]
    assert len(api.__all__) == len(set(api.__all__)) and all(hasattr(api, name) for name in api.__all__)
    assert api.RunSettings.__module__ == "deepfaune_plugin.contracts"


def test_plugin_yaml_names_what_the_registry_has():
    from deepfaune_plugin.api import MODEL_DETECTOR_MODES
    from deepfaune_plugin.models.cards import available_versions
    from deepfaune_plugin.plugins import build_registry, new_plugin_manager

    manifest = yaml.safe_load((REPO / "plugin.yaml").read_text(encoding="utf-8"))
    registry = build_registry(new_plugin_manager())
    builtin = {name for name, reg in registry.hosts.items() if reg.origin.startswith("deepfaune-plugin ")}
    assert sorted(h["name"] for h in manifest["hosts"]) == sorted(builtin)
    backends = {b["name"]: b for b in manifest["backends"]}
    assert sorted(backends) == sorted(n for n, r in registry.backends.items()
                                      if r.origin.startswith("deepfaune-plugin "))
    deepfaune = backends["deepfaune"]
    assert deepfaune["detector_modes"] == list(MODEL_DETECTOR_MODES)
    assert deepfaune["model_cards"] == list(available_versions())
    assert deepfaune["description"] == registry.backends["deepfaune"].obj.description


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in sources(CORE) + sources(MODELS)
                                         if p.parent in (CORE, MODELS)))
def test_every_core_module_says_why_it_exists(path):
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{path} has no module docstring"


def test_hooks_never_print_they_say_through_the_run_log():
    """Issue 19: a host's notes go to the run's log (`api.say`), so a caller's logger or -q sees them."""
    printing = [f"{p.relative_to(REPO)}:{node.lineno}" for p in sources(HOOKS)
                for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
    assert printing == []


def test_say_goes_to_the_run_log_inside_a_run_and_to_stderr_outside(capsys):
    from deepfaune_plugin.api import say
    from deepfaune_plugin.runlog import host_log

    heard: list[str] = []
    with host_log(heard.append):
        say("timelapse: 3 files already classified")
    say("outside")
    assert heard == ["timelapse: 3 files already classified"]
    assert capsys.readouterr().err == "outside\n"


def test_hooks_learn_of_output_only_from_their_options():
    """Issue 19: --output reaches a host one way, `options["output"]`; `RunResults.output` is for the run record."""
    reading = [f"{p.relative_to(REPO)}:{node.lineno}" for p in sources(HOOKS)
               for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(node, ast.Attribute) and node.attr == "output" and isinstance(node.ctx, ast.Load)
               and getattr(node.value, "id", None) == "results"]
    assert reading == []


class _HostMethods:
    """The three methods a host needs, doing nothing: for the registration tests below."""

    def detect(self, source):
        return False

    def read(self, source, options):
        raise AssertionError

    def write(self, manifest, results, options):
        return []


def test_built_in_hooks_subclass_the_api_bases_and_plain_objects_get_their_defaults():
    """Issue 19: Host/Backend are base classes with documented defaults; the core never probes with getattr."""
    from deepfaune_plugin.api import Backend, Host
    from deepfaune_plugin.plugins import default_registry
    from deepfaune_plugin.testing import registry_with

    registry = default_registry()
    built_in = {type(reg.obj).__name__: type(reg.obj).__module__ if isinstance(reg.obj, (Host, Backend)) else ""
                for reg in [*registry.backends.values(), *registry.hosts.values()]
                if reg.origin.startswith("deepfaune-plugin ")}
    assert set(built_in) == {"DeepFauneBackend", "FolderHost", "TimelapseHost", "CamtrapDPHost", "CamtrapRHost"}
    assert all(module.startswith("deepfaune_plugin.hooks.") for module in built_in.values()), built_in

    class PlainHost(_HostMethods):  # a 0.x plugin written before the bases: accepted, the defaults filled in
        name = "plain"

    class PlainBackend:
        name = "plainb"

        def open(self, settings):
            raise AssertionError

    plain = registry_with(hosts=[PlainHost()], backends=[PlainBackend()], installed=False)
    host, backend = plain.host("plain"), plain.backend("plainb")
    assert isinstance(host, Host) and isinstance(backend, Backend)
    assert (host.priority, tuple(host.options), host.description) == (10, (), "")
    assert host.open_writer(None, {}) is None and backend.describe(None) is None
    assert host.plain.__class__ is PlainHost


def test_a_subclass_that_implements_nothing_is_refused_at_registration():
    from deepfaune_plugin.api import Backend, Host
    from deepfaune_plugin.testing import registry_with

    class Empty(Host):
        name = "empty"

    class NoOpen(Backend):
        name = "noopen"

    class Nameless(_HostMethods, Host):
        pass

    errors = [b.error for b in registry_with(hosts=[Empty()], installed=False).broken]
    assert len(errors) == 1 and "lacks detect, read, write or open_writer" in errors[0]
    errors = [b.error for b in registry_with(backends=[NoOpen()], installed=False).broken]
    assert len(errors) == 1 and "lacks open" in errors[0]
    errors = [b.error for b in registry_with(hosts=[Nameless()], installed=False).broken]
    assert len(errors) == 1 and "whose name is ''" in errors[0]


def test_one_error_hierarchy_host_backend_and_plugin_errors_under_deepfaune_error():
    """Issue 19: the CLI prints any DeepfauneError as a message; a caller can tell a host's from a backend's."""
    from deepfaune_plugin.api import BackendError, DeepfauneError, HostError, PluginError
    from deepfaune_plugin.engine.onnx_models import ModelContractError
    from deepfaune_plugin.engine.providers import DeviceError
    from deepfaune_plugin.hooks.camtrapdp.package import PackageError
    from deepfaune_plugin.hooks.camtrapr.host import CamtrapROptionError
    from deepfaune_plugin.hooks.camtrapr.output import CamtrapROutputError
    from deepfaune_plugin.hooks.camtrapr.source import CamtrapRSourceError
    from deepfaune_plugin.hooks.camtrapr.species import SpeciesFoldersError
    from deepfaune_plugin.hooks.timelapse.ddb import TimelapseError
    from deepfaune_plugin.plugins import PluginError as plugins_name

    assert plugins_name is PluginError and issubclass(PluginError, DeepfauneError)
    for host_error in (PackageError, CamtrapROptionError, CamtrapROutputError, CamtrapRSourceError,
                       SpeciesFoldersError, TimelapseError):
        assert issubclass(host_error, HostError) and issubclass(host_error, DeepfauneError), host_error
    for backend_error in (ModelContractError, DeviceError):
        assert issubclass(backend_error, BackendError), backend_error
    assert not issubclass(HostError, BackendError) and not issubclass(BackendError, HostError)


def test_a_wrapped_plain_backend_survives_pickling_as_dask_sends_it():
    import pickle

    from deepfaune_plugin.api import adopt_backend
    from fakes import PlainPicklableBackend

    wrapped = pickle.loads(pickle.dumps(adopt_backend(PlainPicklableBackend())))
    assert wrapped.name == "plain-picklable" and wrapped.describe(None) is None and wrapped.extra == 7
