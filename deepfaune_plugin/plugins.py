"""The plugin manager: built-in and outside plugins are found the same way, through entry points.

Every plugin (ours in `hooks/`, or another package's) declares an entry point in the group
``deepfaune``; loading calls each plugin's hook with a `register` callback, so the registry
knows what every plugin added and which distribution it came from.

Someone else's broken plugin must never break the tool (every command, ``--version`` included,
builds the registry): each entry point is imported alone, and each plugin's hooks run alone,
all or nothing; one that fails is left out and listed in `Registry.broken` (name, distribution,
error), which `deepfaune plugins` shows and every command says once on stderr.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from . import hookspecs
from .api import Backend, Command, Host, adopt_backend, adopt_host
from .errors import PluginError

ENTRY_POINT_GROUP = "deepfaune"


@dataclass(frozen=True)
class Registered:
    name: str
    obj: Any
    plugin: str  # the plugin (entry point) name that registered it
    origin: str  # distribution and version, or "registered at run time"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin left out: its entry point would not import, or its hooks failed or registered something unusable."""

    name: str  # the entry point (plugin) name
    origin: str  # distribution and version, or "registered at run time"
    error: str  # what went wrong, with the place in the plugin's code when it raised

    def describe(self) -> str:
        return f"plugin {self.name!r} ({self.origin}) is not loaded: {self.error}"


@dataclass
class Registry:
    backends: dict[str, Registered] = field(default_factory=dict)
    hosts: dict[str, Registered] = field(default_factory=dict)
    commands: dict[str, Registered] = field(default_factory=dict)  # `deepfaune NAME`, from `register_commands`
    broken: list[BrokenPlugin] = field(default_factory=list)

    def backend(self, name: str) -> Backend:
        return self._get(self.backends, name, "backend").obj

    def host(self, name: str) -> Host:
        return self._get(self.hosts, name, "host").obj

    def _get(self, table: dict[str, Registered], name: str, what: str) -> Registered:
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            broken = "".join(f"; {b.describe()}" for b in self.broken)  # perhaps the one asked for
            raise PluginError(f"no {what} named {name!r} is registered (registered: {known}){broken}; "
                              "see `deepfaune plugins`")
        return table[name]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus what loading the entry points found: where each plugin comes from, and the
    entry points that would not load (pluggy's own loader stops at the first)."""

    def __init__(self) -> None:
        super().__init__("deepfaune")
        self.origins: dict[str, str] = {}  # plugin name -> "distribution version"
        self.broken: list[BrokenPlugin] = []


def new_plugin_manager(load_entry_points: bool = True) -> PluginManager:
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: PluginManager) -> None:
    """Import and register each entry point of the group alone: one that fails is noted and left out."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue  # the same name from a second distribution: the first found wins, as in pluggy
        dist = getattr(ep, "dist", None)
        origin = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown distribution"
        try:
            pm.register(ep.load(), name=ep.name)
        except (Exception, SystemExit) as err:  # anything someone else's import can raise, Ctrl-C aside
            pm.broken.append(BrokenPlugin(ep.name, origin, _describe(err)))
            continue
        pm.origins[ep.name] = origin


def _describe(err: BaseException) -> str:
    """The error, and where the plugin's code raised it (the last frame), for the plugin's author."""
    if isinstance(err, PluginError):
        return str(err)
    text = f"{type(err).__name__}: {err}"
    frames = traceback.extract_tb(err.__traceback__)
    if frames:
        text += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return text


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every plugin's hooks, one plugin at a time, to know who registered what.

    A plugin counts whole or not at all: when one of its hooks raises, or registers something unusable
    (methods missing, a name another plugin has), what it registered is taken back and it is `broken`.
    """
    registry = Registry(broken=list(getattr(pm, "broken", ())))
    origins = getattr(pm, "origins", {})
    failed: set[str] = set()
    for hook_name, table, required in (
        ("register_backends", registry.backends, ("name", "open")),
        ("register_hosts", registry.hosts, ("name", "detect", "read", "write")),
        ("register_commands", registry.commands, ("name", "run")),
    ):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            if plugin in failed:
                continue
            origin = origins.get(plugin, "registered at run time")
            staged: dict[str, Registered] = {}
            try:
                impl.function(register=_registrar(table, staged, plugin, origin, required, hook_name))
            except (Exception, SystemExit) as err:
                failed.add(plugin)
                for done in (registry.backends, registry.hosts, registry.commands):
                    for name in [n for n, reg in done.items() if reg.plugin == plugin]:
                        del done[name]
                registry.broken.append(BrokenPlugin(plugin, origin, _describe(err)))
                continue
            table.update(staged)
    return registry


def _registrar(table: dict[str, Registered], staged: dict[str, Registered], plugin: str, origin: str,
               required: tuple[str, ...], hook: str) -> Callable:
    def register(obj: Any) -> None:
        missing = [attr for attr in required if not hasattr(obj, attr)] or _not_implemented(obj)
        if missing:
            raise PluginError(f"plugin {plugin!r} ({hook}) registered {obj!r}, which lacks {', '.join(missing)}")
        name = obj.name
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} ({hook}) registered {obj!r}, whose name is {name!r}: "
                              "give it a non-empty name")
        if name in table or name in staged:
            first = table[name].plugin if name in table else plugin
            raise PluginError(f"plugin {plugin!r} registers {name!r}, already registered by plugin {first!r}")
        staged[name] = Registered(name=name, obj=_ADOPT[hook](obj), plugin=plugin, origin=origin)

    return register


def _adopt_command(obj: Any) -> Command:
    if not isinstance(obj, Command):
        raise PluginError(f"{obj!r} is not a deepfaune_plugin.api.Command")
    return obj


#: What each hook's objects become in the registry: the base class with its documented defaults.
_ADOPT = {"register_backends": adopt_backend, "register_hosts": adopt_host, "register_commands": _adopt_command}


def _not_implemented(obj: Any) -> list[str]:
    """The methods a Host/Backend subclass must give but inherited from the base (which only raises)."""
    kind = type(obj)
    if isinstance(obj, Backend):
        return ["open"] if kind.open is Backend.open else []
    if isinstance(obj, Host):
        missing = [m for m in ("detect", "read") if getattr(kind, m) is getattr(Host, m)]
        if kind.write is Host.write and kind.open_writer is Host.open_writer:
            missing.append("write or open_writer")
        return missing
    return []


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of every installed plugin, built once per process."""
    global _default
    if _default is None:
        _default = build_registry(new_plugin_manager())
    return _default
