"""Is each run's peak memory its own? Run one sweep in two orders and compare, side by side.

    python experiments/bench_memory_order.py                       # minilm, small data
    python experiments/bench_memory_order.py --methods full,lora,qlora --extra trainer.epochs=1

With isolation (the default, one worker process per run) the peak of a run must not depend on
what ran before it in the sweep; the in-process mode (``trainer.isolate=false``) is measured too,
to show the contamination that isolation removes. Prints the peaks and their ratios.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from harness.results import load


def sweep(methods: list[str], store: Path, isolate: bool, extra: list[str]) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "harness", "-m", f"method={','.join(methods)}",
           f"store.url={store}", f"trainer.isolate={str(isolate).lower()}", "trainer.progress=false",
           "summary=false", f"hydra.sweep.dir={store.parent / store.stem}", *extra]
    subprocess.run(cmd, check=True)
    df = load(store, decode=False)
    return df.set_index("method")["peak_memory_bytes"] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="full,lora,qlora")
    parser.add_argument("--extra", nargs="*", default=["task.train_size=256", "task.val_size=64",
                                                       "task.test_size=128", "trainer.epochs=1"])
    args = parser.parse_args()
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for isolate in (True, False):
            for label, order in (("forward", methods), ("reverse", methods[::-1])):
                store = Path(tmp) / f"{label}-{isolate}.sqlite"
                out[(isolate, label)] = sweep(order, store, isolate, args.extra)
    for isolate in (True, False):
        fwd, rev = out[(isolate, "forward")], out[(isolate, "reverse")]
        table = pd.DataFrame({"forward_MiB": fwd, "reverse_MiB": rev})
        table["ratio"] = table["reverse_MiB"] / table["forward_MiB"]
        mode = "isolated (one process per run)" if isolate else "in-process (trainer.isolate=false)"
        print(f"\npeak memory, {mode}; forward order = {','.join(methods)}")
        print(table.loc[methods].to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
