"""experiments/bench_speed.py: its transformers.Trainer variant trains in a process of its own (as
the benchmark runs it) at the smallest size and gives finite figures, and its report prints the
ratio lines, the old ones unchanged, from given figures."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "experiments" / "bench_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trainer_variant_trains_in_a_process_of_its_own_and_gives_finite_figures():
    done = subprocess.run([sys.executable, "experiments/bench_speed.py", "--one", "trainer_lora",
                           "--extra", "trainer.epochs=1", "task.train_size=32"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("samples_per_s", "tokens_per_s", "outer_samples_per_s", "peak_rss_mib"):
        assert math.isfinite(out[key]) and out[key] > 0, (key, out)
    assert out["steps"] == 1 and 0 <= out["pad_waste"] < 1
    assert out["outer_s"] >= out["train_s"] > 0  # all of train() holds Trainer's own window


def _runs(samples: float, **extra) -> list[dict]:
    return [{"samples_per_s": samples, "tokens_per_s": samples * 25, "pad_waste": 0.1, "bf16": True,
             "peak_rss_mib": 1000.0, "peak_train_mib": 900.0, "peak_eval_mib": 1000.0, **extra}]


def test_report_prints_the_trainer_and_fast_path_ratios_after_the_old_lines(capsys):
    bench = _bench()
    results = {name: _runs(10.0) for name in bench.CORE}
    results["harness_lora"] = _runs(20.0)
    results["trainer_lora"] = _runs(10.0, outer_samples_per_s=8.0, optim="adamw_torch_fused")
    results["harness_lora_compile"] = _runs(30.0)
    results["harness_prompt"] = _runs(2.0)
    results["harness_prompt_packing"] = _runs(3.0)
    bench.report(results, bench.PROMPT_SIZES)
    main, fast = capsys.readouterr().out.split("\nfast paths:")
    assert "harness default / naive plain loop:    2.00x  (goal >= 1.5x)" in main
    assert "harness default / transformers.Trainer: 2.00x samples/s" in main
    assert "all of trainer.train(): 2.50x" in main
    assert "trainer_lora" in main and "harness_prompt" not in main
    assert "task.train_size=64" in fast.splitlines()[0]
    assert "compile / eager: 1.50x samples/s, 1.50x tokens/s" in fast
    assert "packed / padded: 1.50x samples/s" in fast


def test_a_subset_of_the_default_variants_is_listed_as_before(capsys):
    bench = _bench()
    bench.report({"harness_lora": _runs(20.0), "trainer_lora": _runs(10.0)}, bench.PROMPT_SIZES)
    assert capsys.readouterr().out.splitlines() == [f"{'harness_lora':26} {20.0:10.1f} samples/s",
                                                    f"{'trainer_lora':26} {10.0:10.1f} samples/s"]
