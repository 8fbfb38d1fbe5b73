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
package re-exports it and registers every module in its folder: a new method is one module here
(or a plug-in outside, docs/extending.md) and one YAML file. The modules are registered from their
``@register_method`` lines and imported when a run builds the method (:func:`declare_submodules`),
so checking a command line imports neither torch nor peft.
"""
from __future__ import annotations

from harness.methods.spec import METHODS, MethodSpec, builder_name, declare_submodules, register_method

declare_submodules(__name__, __path__)


def __getattr__(name: str):
    # The classes a method builds on live with torch in harness.methods.base, loaded on first use.
    if name in ("Adapted", "MethodContext", "TrainingStart"):
        from harness.methods import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["METHODS", "Adapted", "MethodContext", "MethodSpec", "TrainingStart", "builder_name",
           "register_method"]
