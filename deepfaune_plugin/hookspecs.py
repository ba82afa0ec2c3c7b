"""Hook specifications: the three ways a plugin extends deepfaune.

Each hook receives a `register` callback, so one plugin module can add any number of
backends, hosts or commands, and the core keeps the registry (name → object, plus where it came from).
A host adds options to the core's commands through its `HostOption`s (which name the commands they join),
so the core's parsers name no host.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("deepfaune")
hookimpl = pluggy.HookimplMarker("deepfaune")
"""The decorator of a plugin's `register_backends` / `register_hosts` functions."""


@hookspec
def register_backends(register):
    """Add classification backends: call ``register(backend)`` for each (see `deepfaune_plugin.api.Backend`)."""


@hookspec
def register_hosts(register):
    """Add host adapters: call ``register(host)`` for each (see `deepfaune_plugin.api.Host`)."""


@hookspec
def register_commands(register):
    """Add commands to `deepfaune`: call ``register(command)`` for each (see `deepfaune_plugin.api.Command`)."""
