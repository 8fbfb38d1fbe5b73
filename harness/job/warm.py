"""What every run's worker imports, imported once by the fork server (harness.job.isolation) so that
each worker forked from it starts with torch, transformers, peft, bitsandbytes and the built-in
methods loaded, instead of spending seconds importing them per run.

Nothing here may stop the fork server: a module that fails to import is left for the run to
import, where the error is recorded with that run.
"""
from __future__ import annotations

import contextlib
import gc
import importlib


def preload() -> list[str]:
    """Import what a run needs; returns the modules that could not be imported."""
    from harness.quiet import quiet_libraries

    quiet_libraries()
    modules = ["torch", "transformers", "peft", "harness.run.pipeline", "harness.job.worker", "harness.job.runner",
               "transformers.models.bert.modeling_bert", "transformers.models.llama.modeling_llama",
               "bitsandbytes", "harness.tasks.scoring.metrics"]
    failed = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - see the module docstring
            failed.append(module)
    with contextlib.suppress(Exception):
        from harness.methods import METHODS

        for name in METHODS.names():  # every built-in method, as a run would load it
            module = METHODS.info(name).get("module")
            if module:
                try:
                    importlib.import_module(module)
                except Exception:  # noqa: BLE001
                    failed.append(module)
    return failed


preload()
# What was imported lives as long as the fork server: frozen, it is left out of every garbage
# collection, in the server (whose exit would otherwise walk it for 2 s, holding the command's
# output open) and in each worker forked from it (whose pages then stay shared, not copied).
gc.freeze()
