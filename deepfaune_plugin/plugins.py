"""The plugin manager: built-in and outside plugins are found the same way, through entry points.

Every plugin (ours in `hooks/`, or another package's) declares an entry point in the group
``deepfaune``; loading calls each plugin's hook with a `register` callback, so the registry
knows what every plugin added and which distribution it came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs
from .api import Backend, Host

ENTRY_POINT_GROUP = "deepfaune"


class PluginError(Exception):
    """A plugin registered something unusable (duplicate name, missing methods)."""


@dataclass(frozen=True)
class Registered:
    name: str
    obj: Any
    plugin: str  # the plugin (entry point) name that registered it
    origin: str  # distribution and version, or "registered at run time"


@dataclass
class Registry:
    backends: dict[str, Registered] = field(default_factory=dict)
    hosts: dict[str, Registered] = field(default_factory=dict)

    def backend(self, name: str) -> Backend:
        return self._get(self.backends, name, "backend").obj

    def host(self, name: str) -> Host:
        return self._get(self.hosts, name, "host").obj

    @staticmethod
    def _get(table: dict[str, Registered], name: str, what: str) -> Registered:
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(f"no {what} named {name!r} is registered (registered: {known}); see `deepfaune plugins`")
        return table[name]


def new_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("deepfaune")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def _origins(pm: pluggy.PluginManager) -> dict[int, str]:
    found = {}
    for plugin, dist in pm.list_plugin_distinfo():
        found[id(plugin)] = f"{dist.project_name} {dist.version}"
    return found


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every plugin's hooks, one plugin at a time, to know who registered what."""
    registry = Registry()
    origins = _origins(pm)
    for hook_name, table, required in (
        ("register_backends", registry.backends, ("name", "open")),
        ("register_hosts", registry.hosts, ("name", "detect", "read", "write")),
    ):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = origins.get(id(impl.plugin), "registered at run time")
            impl.function(register=_registrar(table, impl.plugin_name, origin, required, hook_name))
    return registry


def _registrar(table: dict[str, Registered], plugin: str, origin: str, required: tuple[str, ...], hook: str) -> Callable:
    def register(obj: Any) -> None:
        missing = [attr for attr in required if not hasattr(obj, attr)]
        if missing:
            raise PluginError(f"plugin {plugin!r} ({hook}) registered {obj!r}, which lacks {', '.join(missing)}")
        name = obj.name
        if name in table:
            raise PluginError(
                f"plugin {plugin!r} registers {name!r}, already registered by plugin {table[name].plugin!r}"
            )
        table[name] = Registered(name=name, obj=obj, plugin=plugin, origin=origin)

    return register


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of every installed plugin, built once per process."""
    global _default
    if _default is None:
        _default = build_registry(new_plugin_manager())
    return _default
