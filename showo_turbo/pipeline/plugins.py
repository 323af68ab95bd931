"""Plug-ins found by name: a registry maps a name (params.yaml's `world.kind`, a stage's `method`)
to the module that implements it, imported on first use, so that the core imports none of them."""

from __future__ import annotations

import importlib
from types import ModuleType


def plugin_module(registry: dict[str, str], name: str, what: str, error: type[Exception] = ValueError) -> ModuleType:
    """The module registered as `name`, or `error` naming the known ones (`what`: e.g. 'world kind')."""
    if name not in registry:
        raise error(f"unknown {what} {name!r}; known: {', '.join(registry)}")
    return importlib.import_module(registry[name])
