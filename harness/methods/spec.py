"""The method registry: each name maps to a :class:`MethodSpec`, the builder and what it supports.

A method module registers its entry point here (``@register_method``); :mod:`harness.methods`
re-exports all of this. This module imports no method (and neither torch nor peft), so the methods
can import it without an import cycle, and a command line is checked without loading them.

:func:`declare_submodules` reads what each built-in method module registers from its source (the
literal arguments of its ``@register_method`` decorator) and registers a spec whose builder
imports the module on first use: validation knows every method's name and support in
milliseconds, and only the process that trains imports torch, transformers and peft. A method's
config schema (``register_method_schema``) is built the same way, from its class definition and
the module's standard-library and ``harness.config`` imports; the real class replaces it when the
module is imported. A module whose decorator arguments are not literals, or whose schema needs
anything else, is imported as before.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from harness.registry import Registry

if TYPE_CHECKING:
    from harness.methods.base import Adapted

Builder = Callable[..., "Adapted"]  # (model, method: MethodConfig, ctx: MethodContext) -> Adapted


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: how to build it and what it can train."""

    build: Builder
    four_bit: bool  # it can train on a base loaded in 4-bit (bitsandbytes)
    task_types: Optional[tuple[str, ...]] = None  # the task types it supports; None: every one
    own_optimizer: bool = False  # it makes its own optimizer (trainer.optimizer must be adamw)
    # It trains no neural model (a classical baseline): ``build(cfg, isolated, work_dir, tracker)``
    # runs the whole run and returns its (fields, curves, predictions), as harness.run.pipeline.RunResult.
    standalone: bool = False

    def supports_task_type(self, name: str) -> bool:
        return self.task_types is None or name in self.task_types


METHODS: Registry[MethodSpec] = Registry("method")


class _Deferred:
    """The builder of a method declared from its module's source: imports the module (whose
    decorator then registers the real builder) and calls that."""

    def __init__(self, name: str, module: str) -> None:
        self.name, self.module = name, module

    def __call__(self, *args, **kwargs):
        importlib.import_module(self.module)
        real = METHODS.get(self.name).build
        if isinstance(real, _Deferred):
            raise RuntimeError(f"module {self.module} did not register method '{self.name}'")
        return real(*args, **kwargs)


def _check_support(name: str, four_bit, task_types) -> tuple[str, ...] | None:
    if not isinstance(four_bit, bool):
        raise TypeError(f"method '{name}': four_bit must be True or False, got {four_bit!r}")
    if task_types is not None:
        if isinstance(task_types, str) or not all(isinstance(t, str) for t in task_types):
            raise TypeError(f"method '{name}': task_types must be a tuple of names, got {task_types!r}")
        task_types = tuple(task_types)
    return task_types


def register_method(name: str, *, four_bit: bool, task_types: tuple[str, ...] | None = None,
                    own_optimizer: bool = False, standalone: bool = False) -> Callable[[Builder], Builder]:
    """Register ``build(model, method, ctx) -> Adapted`` under ``name`` with what it supports:
    ``four_bit`` (it can train a 4-bit base), ``task_types`` (names in
    ``harness.tasks.types.TASK_TYPES``; None: every task type) and ``own_optimizer`` (its
    optimizer is its own, so ``trainer.optimizer`` cannot choose one) and ``standalone`` (it
    trains no neural model and runs the whole run itself, see :class:`MethodSpec`). Returns
    ``build`` unchanged."""
    task_types = _check_support(name, four_bit, task_types)

    def add(build: Builder) -> Builder:
        if name in METHODS and isinstance(METHODS.get(name).build, _Deferred):
            declared = METHODS.get(name)
            if (declared.four_bit, declared.task_types, declared.own_optimizer, declared.standalone) != (
                    four_bit, task_types, own_optimizer, standalone):
                raise ValueError(f"method '{name}' registers other support than its source declares")
            METHODS.unregister(name)
        METHODS.register(name, four_bit=four_bit, task_types=task_types)(
            MethodSpec(build, four_bit, task_types, own_optimizer, standalone))
        return build

    return add


def _declared(tree: ast.Module) -> list[tuple[str, bool, tuple[str, ...] | None, bool, bool]] | None:
    """The (name, four_bit, task_types, own_optimizer, standalone) of each ``@register_method`` in a module's source; None
    when one has arguments that are not literals (the module must then be imported)."""
    found = []
    for node in ast.walk(tree):
        for dec in getattr(node, "decorator_list", []):
            func = dec.func if isinstance(dec, ast.Call) else dec
            called = getattr(func, "id", None) or getattr(func, "attr", None)
            if called != "register_method":
                continue
            try:
                name = ast.literal_eval(dec.args[0])
                kwargs = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
            except (ValueError, IndexError, AttributeError):
                return None
            if not isinstance(name, str) or set(kwargs) - {"four_bit", "task_types", "own_optimizer",
                                                            "standalone"}:
                return None
            found.append((name, kwargs.get("four_bit"), kwargs.get("task_types"),
                          bool(kwargs.get("own_optimizer", False)), bool(kwargs.get("standalone", False))))
    return found


# Top-level imports a method's config schema may use when it is declared from source.
_LIGHT = ("harness.config", "harness.errors")


def _schemas(tree: ast.Module, module: str, file: Path) -> dict[str, type]:
    """The config schemas a module registers (``register_method_schema("name", Class)`` at its top
    level), built from their class definitions alone, with the module's standard-library and
    ``harness.config`` imports. Raises if a schema needs anything else (then import the module)."""
    import sys

    calls = [node.value for node in tree.body if isinstance(node, ast.Expr)
             and isinstance(node.value, ast.Call)
             and getattr(node.value.func, "id", None) == "register_method_schema"]
    if not calls:
        return {}
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               and all(m.split(".")[0] in sys.stdlib_module_names or m in _LIGHT
                       for m in ([a.name for a in node.names] if isinstance(node, ast.Import)
                                 else [node.module or ""]))
               and getattr(node, "module", None) != "__future__"]
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    namespace: dict = {"__name__": module}
    exec(compile(ast.Module(imports, []), str(file), "exec", dont_inherit=True), namespace)
    found = {}
    for call in calls:
        name, cls = ast.literal_eval(call.args[0]), call.args[1].id
        exec(compile(ast.Module([classes[cls]], []), str(file), "exec", dont_inherit=True), namespace)
        found[name] = namespace[cls]
    return found


def declare_submodules(package: str, path) -> list[str]:
    """Register the methods of every module in a package folder from their sources (see the
    module docstring); returns the modules that had to be imported instead."""
    imported = []
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_") or info.name in ("base", "spec"):
            continue
        module = f"{package}.{info.name}"
        file = Path(info.module_finder.path) / f"{info.name}.py"
        declared = schemas = None
        if file.is_file():
            tree = ast.parse(file.read_text())
            declared = _declared(tree)
            try:
                schemas = _schemas(tree, module, file)
            except Exception:  # noqa: BLE001 - a schema that needs more than its source: import
                declared = None
        if declared is None:
            importlib.import_module(module)
            imported.append(module)
            continue
        from harness.config import METHOD_SCHEMAS, register_method_schema

        for name, schema in schemas.items():
            if name not in METHOD_SCHEMAS:
                register_method_schema(name, schema)
        for name, four_bit, task_types, own, standalone in declared:
            if name not in METHODS:
                task_types = _check_support(name, four_bit, task_types)
                METHODS.register(name, four_bit=four_bit, task_types=task_types, module=module)(
                    MethodSpec(_Deferred(name, module), four_bit, task_types, own, standalone))
    return imported


def builder_name(method_cfg) -> str:
    """The registered method that builds this method config: ``builder``, else its ``name``."""
    return method_cfg.builder or method_cfg.name
