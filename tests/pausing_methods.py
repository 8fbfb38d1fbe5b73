"""A method for tests only: LoRA that holds one run of a sweep at its last training step until
the test says go, so that a test can take the store away while a run is known to be training.

``method.builder=held_test`` with ``$HARNESS_TEST_HOLD=<folder>:<n>``: the n-th run to reach its
last step (counted in ``<folder>/reached``) touches ``<folder>/held`` and waits for
``<folder>/go``; the others go straight on.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from harness.methods import METHODS, register_method
from harness.methods.lora import build as build_lora

HOLD_ENV = "HARNESS_TEST_HOLD"


def _hold_if_mine() -> None:
    folder, n = os.environ[HOLD_ENV].rsplit(":", 1)
    folder = Path(folder)
    with (folder / "reached").open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    if len((folder / "reached").read_text().splitlines()) != int(n):
        return
    (folder / "held").touch()
    deadline = time.time() + 300
    while not (folder / "go").exists() and time.time() < deadline:
        time.sleep(0.05)


if "held_test" not in METHODS:
    @register_method("held_test", four_bit=True)
    def build_held(model, method, ctx):
        adapted = build_lora(model, method, ctx)

        def hold(step: int, total: int) -> None:
            if step == total:
                _hold_if_mine()

        adapted.after_optimizer_step = hold
        return adapted
