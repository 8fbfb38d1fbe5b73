"""The method registry: each name maps to a :class:`MethodSpec`, the builder and what it supports.

A method module registers its entry point here (``@register_method``); :mod:`harness.methods`
re-exports all of this and imports the built-in methods. This module imports no method, so the
methods can import it without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from harness.methods.base import Adapted
from harness.registry import Registry

Builder = Callable[..., Adapted]  # (model, method: MethodConfig, ctx: MethodContext) -> Adapted


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: how to build it and what it can train."""

    build: Builder
    four_bit: bool  # it can train on a base loaded in 4-bit (bitsandbytes)
    task_types: Optional[tuple[str, ...]] = None  # the task types it supports; None: every one

    def supports_task_type(self, name: str) -> bool:
        return self.task_types is None or name in self.task_types


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(name: str, *, four_bit: bool,
                    task_types: tuple[str, ...] | None = None) -> Callable[[Builder], Builder]:
    """Register ``build(model, method, ctx) -> Adapted`` under ``name`` with what it supports:
    ``four_bit`` (it can train a 4-bit base) and ``task_types`` (names in
    ``harness.tasks.types.TASK_TYPES``; None: every task type). Returns ``build`` unchanged."""
    if not isinstance(four_bit, bool):
        raise TypeError(f"method '{name}': four_bit must be True or False, got {four_bit!r}")
    if task_types is not None:
        if isinstance(task_types, str) or not all(isinstance(t, str) for t in task_types):
            raise TypeError(f"method '{name}': task_types must be a tuple of names, got {task_types!r}")
        task_types = tuple(task_types)

    def add(build: Builder) -> Builder:
        METHODS.register(name, four_bit=four_bit, task_types=task_types)(
            MethodSpec(build, four_bit, task_types))
        return build

    return add


def builder_name(method_cfg) -> str:
    """The registered method that builds this method config: ``builder``, else its ``name``."""
    return method_cfg.builder or method_cfg.name
