"""experiments/bench_gpu.py, the GPU check, at tiny shapes on the CPU: the same script, code path
and table as on a GPU (a 2-layer model of Llama-3.1-8B's family built from its published config,
loaded, adapted and trained through the harness; QLoRA through bitsandbytes), so that it is known
to work before it meets one."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3


def table_rows(text: str) -> list[dict]:
    """The markdown table's rows as {column: cell}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def close(cell: str, value: float) -> bool:
    """A cell shows ``value`` as the table rounds it (three significant digits, or whole numbers)."""
    return float(cell.rstrip("%")) == pytest.approx(value, rel=0.01, abs=0.51)


def test_tiny_bench_trains_every_method_and_its_table_matches_its_json(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "experiments/bench_gpu.py", "--tiny", "--no-pytest",
                           "--models", "llama-3.1-8b", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (out / "bench_gpu.md").read_text()
    assert text.strip() in done.stdout  # the table is printed, ready for the README
    report = json.loads((out / "bench_gpu.json").read_text())
    rows = table_rows(text)
    assert [r["method"] for r in rows] == ["lora", "qlora", "dora"] == [r["method"] for r in report["rows"]]
    assert report["tiny"] and report["pytest"] is None and report["versions"]["torch"]
    for cells, row in zip(rows, report["rows"]):
        assert not row["note"] and cells["note"] == "", row["note"]
        assert cells["model"] == row["model"] == "llama-3.1-8b"
        assert (cells["seq"], cells["batch"], cells["ckpt"]) == ("64", "2", "yes")
        assert int(cells["steps"]) == row["steps"] == 2
        assert row["loss_chunk_tokens"] == 2 * 64 // 8  # torchtune's 8 chunks, through the task's loss
        assert len(row["step_times_s"]) == 3 and 0 < row["loaded_s"] < row["counted_s"]  # 1 warm-up + 2
        assert row["tokens_per_s"] > 0 and close(cells["tokens/s"], row["tokens_per_s"])
        assert row["train_flops_per_token"] > 0 and close(cells["TFLOP/s"], row["achieved_tflops"])
        assert 0 < row["mfu"] < 1 and close(cells["MFU"], row["mfu"])
        assert row["memory_kind"] == "cpu_rss" and cells["peak reserved GiB"] == ""  # no reserved on a CPU
        assert close(cells["peak alloc GiB"], row["train_peak_bytes"] / GIB)
        assert close(cells["planner GiB"], row["planner_bytes"] / GIB)
        assert close(cells["planner error"], 100 * row["planner_error"])
    published = {r["method"]: r["torchtune GiB"] for r in rows}
    assert published == {"lora": "16.2", "dora": "", "qlora": "7.4"}
    qlora = report["rows"][1]
    assert qlora["trainable_params"] > 0 and qlora["r"] == 8
    assert qlora["targets"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_a_configuration_killed_at_its_time_limit_keeps_how_far_it_got(tmp_path):
    """The child stamps its progress as it goes; a configuration killed at its time limit is a row
    with its loading time and the steps it took, not a bare "timed out"."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "experiments" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    work, model = tmp_path / "work", "llama-3.2-1b"
    built = bench.spawn({"what": "build", "name": "build", "folder": str(tmp_path / "model"),
                         "config": bench.model_config(model, True), "tiny": True}, work, 120)
    assert "error" not in built, built
    s = bench.settings(model, "lora", True)
    overs = bench.overrides(model, "lora", built["folder"], s, "cpu", 100_000)
    began = time.time()
    row = bench.spawn({"what": "train", "name": "slow", "overrides": overs, "vocab": 128256, "warmup": 1,
                       "deadline": began + 3600}, work, 45)  # more steps than 45 s allow, no early stop
    assert 44 < time.time() - began < 60
    assert row["error"].startswith("timed out after 45 s (this configuration's time limit), after "), row
    steps = row["step_times_s"]
    assert f"after {len(steps)} step(s) of median" in row["error"] and len(steps) >= 2
    assert 0 < row["loaded_s"] < row["counted_s"] and all(t > 0 for t in steps)
    assert (work / "slow.log").is_file()
