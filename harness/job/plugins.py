"""Plug-ins: the built-in methods, tasks and trackers, and a user's own from outside the package.

A plug-in is a Python module that registers something when imported (``@register_method``,
``@TASK_LOADERS.register``, ``fields.declare``, a store backend...). Three ways in:

- the harness's own modules (always);
- installed packages that name a module in the entry-point group ``peft_harness.plugins``
  (``[project.entry-points."peft_harness.plugins"] mine = "my_pkg.my_method"``);
- ``plugins=[my_module,/path/to/my_method.py]`` on the command line (module names, or files).

Their YAML files join the config groups through Hydra's search path
(``hydra.searchpath=[file:///path/to/conf]``). See docs/extending.md.
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterable

from harness.errors import ConfigError

ENTRY_POINT_GROUP = "peft_harness.plugins"
_loaded: set[str] = set()


def _import(spec: str) -> None:
    """A module name, or a ``.py`` file: its folder joins ``sys.path`` (and ``PYTHONPATH``, so
    that worker processes and launchers' job processes find it too) and it is imported by name."""
    if spec in _loaded:
        return
    name = spec
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"plugins: no such file: {path}")
        folder, name = str(path.parent), path.stem
        if folder not in sys.path:
            sys.path.insert(0, folder)
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if folder not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
        known = sys.modules.get(name)
        if known is not None and Path(getattr(known, "__file__", "") or "").resolve() != path:
            raise ConfigError(f"plugins: {path.name} has the name of module '{name}', which is "
                              f"already imported from {known.__file__}; rename the file")
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"plugins: cannot import module '{name}' (is it on PYTHONPATH?)") from None
        raise
    _loaded.add(spec)


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the built-in plug-ins, the installed ones and ``modules``; each at most once."""
    import harness.methods  # noqa: F401  (each import registers what the module defines)
    import harness.results  # noqa: F401  (store backends)
    import harness.tasks  # noqa: F401
    import harness.tracking  # noqa: F401

    if "<entry points>" not in _loaded:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            _import(entry.value)
        _loaded.add("<entry points>")
    for spec in modules:
        _import(str(spec))


def plugins_in_overrides(overrides: Iterable[str]) -> list[str]:
    """The modules a command line names with ``plugins=[...]`` (or ``+plugins=``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found: list[str] = []
    for override in OverridesParser.create().parse_overrides(
            [o for o in overrides if o.lstrip("+~").startswith("plugins=")]):
        value = override.value()
        found += [str(v) for v in (value if isinstance(value, list) else [value])]
    return found
