"""A name -> object registry whose lookups fail with the known names and the closest match.

Each entry may carry keyword facts about itself (``Registry.register(name, needs_data=True)``),
read back with :meth:`Registry.info`, so that a plug-in declares what it needs in its own file.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

from harness.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{name}'; known: {', '.join(sorted(known))}.{hint}"


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            self._info[name] = dict(info)
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a declared entry replaced by the real one)."""
        self._items.pop(name, None)
        self._info.pop(name, None)

    def check(self, name: str, key: str | None = None) -> None:
        """Raise :class:`ConfigError` (one line, close match) unless ``name`` is registered."""
        if name not in self._items:
            raise ConfigError(unknown_name_message(key or self.kind, name, self.names()))

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name]

    def info(self, name: str) -> dict[str, Any]:
        """The facts ``name`` was registered with (empty if none)."""
        self.get(name)
        return self._info[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_submodules(package: str, path) -> list[str]:
    """Import every module of a package (``__name__``, ``__path__``): a plug-in module dropped into
    the package's folder registers itself with no list to edit. Returns the names imported."""
    import importlib
    import pkgutil

    names = [info.name for info in pkgutil.iter_modules(path) if not info.name.startswith("_")]
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
