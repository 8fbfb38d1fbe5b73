"""Who reads an FSDP run's weights: each process's peak memory with ``trainer.fsdp_load=first``
(the first process reads them and sends each process its shards; the others build the model on
the meta device) against ``every`` (each process loads the whole model, then shards it), side by
side in one run of this script.

    python experiments/fsdp_loading.py                                   # SmolLM2-135M, LoRA, 2 CPU processes
    python experiments/fsdp_loading.py --model minilm --method dora
    python experiments/fsdp_loading.py --extra trainer.device=cuda       # 2 GPUs

Both runs are the same configuration (who reads the weights does not change what trains), so
each goes into a store of its own. Prints, per process, the peak memory through loading and
training (RSS on CPU, the allocator's peak on a GPU), whether it read the weights, the
parameters it held after sharding, and the ratio first / every; then each run's test loss
(they must agree) and its recorded peak, which includes the first process testing the whole
model after training.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from harness.results import load

SHORT = ["task.train_size=64", "task.val_size=32", "task.test_size=64", "trainer.epochs=1",
         "trainer.max_steps=8", "trainer.batch_size=8", "trainer.eval_batch_size=16",
         "trainer.latency_batches=1"]


def run(mode: str, folder: Path, args) -> dict:
    store = folder / f"{mode}.sqlite"
    cmd = [sys.executable, "-m", "harness", f"model={args.model}", f"method={args.method}",
           f"task={args.task}", f"trainer.processes={args.processes}", "trainer.strategy=fsdp",
           f"trainer.fsdp_load={mode}", "trainer.progress=false", "report.enabled=false",
           f"store.url={store}", f"hydra.run.dir={folder / mode}", *SHORT, *args.extra]
    subprocess.run(cmd, check=True)
    row = load(store).iloc[0]
    details = json.loads(row["details_json"])
    return {"row": row, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--method", default="lora")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides, e.g. trainer.device=cuda")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {mode: run(mode, Path(tmp), args) for mode in ("first", "every")}
    table = pd.DataFrame({
        f"{mode}_peak_MiB": [b / 2**20 for b in r["details"]["peak_memory_per_rank_bytes"]] for mode, r in runs.items()
    })
    for mode, r in runs.items():
        table[f"{mode}_read_weights"] = ["yes" if v else "no" for v in r["details"]["weights_read_per_rank"]]
        table[f"{mode}_params_held"] = r["details"]["parameters_per_rank"]
    table["peak_first/every"] = table["first_peak_MiB"] / table["every_peak_MiB"]
    table.index.name = "rank"
    phases = pd.DataFrame({(mode, phase): [b / 2**20 for b in peaks]
                           for mode, r in runs.items()
                           for phase, peaks in r["details"]["peak_memory_per_rank_by_phase_bytes"].items()})
    phases.index.name = "rank"
    row = runs["first"]["row"]
    weights = row["total_params"] * 4 / 2**20  # fp32 (model.dtype=float32, the default)
    print(f"\n{args.model}, {args.method}, {args.processes} processes, FSDP; {row['total_params']:,} parameters "
          f"({weights:.0f} MiB in fp32)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}" if v < 10 else f"{v:.0f}"))
    print("\npeak MiB per phase (setup: loading, building, sharding; train; eval: validation)")
    print(phases.to_string(float_format=lambda v: f"{v:.0f}"))
    for mode, r in runs.items():
        print(f"{mode}: test loss {r['row']['eval_loss']:.6f}, accuracy {r['row']['accuracy']:.4f}, "
              f"recorded peak {r['row']['peak_memory_bytes'] / 2**20:.0f} MiB, wall {r['row']['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
