"""Fine-tuning methods. Each is a small module with one entry point, registered with what it
supports:

    @register_method("name", four_bit=True, task_types=None)
    def build(model, method: MethodConfig, ctx: MethodContext) -> Adapted

It takes the loaded base model, the method's own config and a small :class:`MethodContext` (the
resolved target and head modules, whether the base is 4-bit, the task type, the task names, the
device, the seed, ...) and returns an :class:`Adapted`: the model to train, plus the optimizer and
hooks when the method needs its own. The training loop only ever talks to ``Adapted``; no method
is special-cased inside it.

``METHODS`` maps each name to a :class:`MethodSpec` (the builder and what it supports), which
the validation step reads to refuse a method on a 4-bit base or a task type it cannot train.
Config-only variants (``dora``, ``qlora``, ``qdora``) have no code: their YAML names the
registered method that builds them (``method.builder``; see :func:`builder_name`).

The registry lives in :mod:`harness.methods.spec` (method modules import it from there); this
package re-exports it and imports every module in its folder, which registers the methods: a new
method is one module here (or a plug-in outside, docs/extending.md) and one YAML file.
"""
from __future__ import annotations

from harness.methods.base import Adapted, MethodContext, TrainingStart
from harness.methods.spec import METHODS, MethodSpec, builder_name, register_method
from harness.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["METHODS", "Adapted", "MethodContext", "MethodSpec", "TrainingStart", "builder_name",
           "register_method"]
