"""Does the report scale to a week of a cluster's sweeps? Build such a store, time the readers.

    python experiments/bench_report_scale.py                     # 1,000 and 5,000 runs
    python experiments/bench_report_scale.py --runs 5000 --keep /tmp/scale   # keep the stores
    python experiments/bench_report_scale.py --runs 1000 --profile           # + top functions

First a handful of real tiny training runs go through the harness (``python -m harness -m
method=lora,dora,vera,ia3,loha,pissa model=tiny_bert task=synthetic trainer=smoke``, two seeds,
three epochs) into a temporary store. Their rows, curves and per-example test predictions are
then replicated into N runs, each with its own run id, config hash and seed and jittered metrics,
spread over 6 methods x 4 ranks x 3 learning rates x 4 tasks x 2 models (ia3 has no rank) with as
many seeds as N needs, over seven daily sweeps, 2% of them failed: what a week of a cluster
looks like. The runs are written with the store's own ``record`` (one transaction each).

Timed, each in a fresh process: ``python -m harness.report`` (every table format and the PDF),
``python -m harness.results list`` and ``harness.results.load()``; then the report once more in
this process with each stage of ``harness.report.build.build_report`` wrapped in a timer, to say
where its time went (``--profile``: cProfile's top functions as well).

Measured on a 2-core development machine shared with other work (torch CPU). The
store: 63 configurations in each of 8 tables (task x model), 1 to 10 seeds each.

Before (the code of issue 28, on this script's 1,000-run store): ``python -m harness.report``
took 816 s (13 min 36 s; the issue's own 1,000-run store took 148 s, 5,000 runs had not finished
in 10 minutes; 5,000 runs were not rerun here). Where the time went (the in-process timing, with
other work on the machine part of the time: 1,067 s): the analysis 892 s (84%): every pair of a
table's 63 configurations (1,953) tested on each of 13 metrics, each test reading its two sides'
seeds, values, budgets and settings out of DataFrames again (pandas filtering, set_index, a JSON
flatten of both group keys, scipy's t-test and binomial-test wrappers at about a millisecond a
call), a bootstrap's per-run score rebuilt as a sparse matrix per pair, each run resampled by its
own sparse product, group labels found by scanning every row for every row; then the tables'
look-ups, a boolean mask over the 200,000-row pairs frame per cell (comparison table 50 s, CSV 44
s, reference table 6 s, findings 17 s); the figures 41 s (a marker, bar or line for each of 63
configurations); the PDF 13 s.

After (this code, same machine and stores):

    seconds                                  1,000 runs    5,000 runs
    report (python -m harness.report)              36.6          46.2
    list (python -m harness.results list)           0.5           0.7
    load() (in a fresh process)                     0.5           0.9
      in this process, of which:                   33.1          37.6
      analyze                                       4.7           8.4
      figures (pair_figures + cost_figure)         14.3          14.1
      write_pdf                                     9.0           9.2
      tables, CSV, cost, findings                   4.4           4.3

Where it goes now: the figures (48 of them, ~0.3 s each in matplotlib) and the PDF (its tables'
cells laid out by ReportLab), which grow with the number of tables, not of runs; the analysis
(each run's 4,999 bootstrap resamples, all runs of a test set in one float32 matrix product;
the two-level bootstrap of each tested pair). What changed: each configuration is read once
(:mod:`harness.report.sides`) and the analysis's frames are indexed once
(:mod:`harness.report.lookup`); t-tests, intervals and McNemar's binomial test call scipy's
special functions directly (:mod:`harness.report.student`, :mod:`harness.report.mcnemar`); runs
on one test set are resampled together (:mod:`harness.report.counts`); a table of more than 24
configurations tests the pairs the report prints, not all 1,953 (:mod:`harness.report.family`),
and one of more than 20 draws 12 configurations and the Pareto front in its figures
(:mod:`harness.report.shown`), both said in the report's text. Every number of a report whose tables have at most 24
configurations is the same as before to the last bit (tests/test_report_scale.py checks the
arithmetic; a 200-run store gave byte-identical tables, Markdown, PDF text and figures).
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.results import load, load_curves, open_store

METHODS = ("lora", "dora", "vera", "ia3", "loha", "pissa")
RANKS = (4, 8, 16, 32)
LR_FACTORS = (0.5, 1.0, 2.0)
# task: (test examples, training examples, difficulty: the accuracy a mid configuration reaches)
TASKS = {"synthetic": (112, 64, 0.62), "rotten_tomatoes": (1066, 8530, 0.84),
         "overruling": (480, 1920, 0.90), "scotus_outcome": (300, 1200, 0.70)}
MODELS = {"tiny_bert": 1.0, "minilm": 1.03}  # model: quality factor
QUALITY = {"lora": 0.0, "dora": 0.01, "vera": -0.02, "ia3": -0.03, "loha": -0.005, "pissa": 0.005}
DAYS = 7
FAILED_SHARE = 0.02


def tiny_runs(store: Path, work: Path) -> None:
    """Real tiny training runs through the harness (the templates of every synthetic run)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "-m", "harness", "-m", f"method={','.join(METHODS)}", "seed=0,1",
                    "model=tiny_bert", "task=synthetic", "trainer=smoke", "trainer.epochs=3",
                    "trainer.max_steps=24", "task.test_size=200", f"store.url={store}",
                    f"hydra.sweep.dir={work / 'sweep'}", "report.enabled=false", "summary=false"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def templates(store: Path) -> dict[str, tuple[dict, list[dict], dict]]:
    """{method: (row, curves, test predictions)} of one real run per method."""
    runs = load(store, status="finished", decode=False)
    curves = load_curves(store)
    preds = open_store(store, create=False).predictions()
    out = {}
    for row in runs.to_dict("records"):
        if row["method"] not in out:
            c = curves[curves.run_id == row["run_id"]].drop(columns="run_id").to_dict("records")
            out[row["method"]] = (row, c, preds[row["run_id"]])
    return out


def grid(n: int) -> list[tuple]:
    """The first ``n`` grid points, seed by seed: (task, model, method, r, lr factor, seed)."""
    points = [(t, m, meth, r, f) for t in TASKS for m in MODELS for meth in METHODS
              for r in ((None,) if meth == "ia3" else RANKS) for f in LR_FACTORS]
    return [(*p, seed) for seed in range(n // len(points) + 1) for p in points][:n]


def test_set(template: dict, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, majority predictions) of one task's test split on one seed: the real run's labels
    tiled to the task's size and shuffled by the seed (so every run of a seed shares them)."""
    n = TASKS[task][0]
    labels = np.random.default_rng([seed, n]).permutation(np.resize(template["labels"], n))
    majority = np.full(n, np.bincount(labels).argmax(), dtype=labels.dtype)
    return labels, majority


def synthetic_run(t: tuple, point: tuple, i: int, day: int, rng: np.random.Generator) -> tuple[dict, list, dict]:
    """One replicated run: the template's row, curves and predictions with this grid point's
    settings and jittered metrics (accuracy and macro-F1 computed from its predictions)."""
    row, curves, preds = t
    task, model, method, r, factor, seed = point
    n_test, n_train, level = TASKS[task]
    lr = float(row["lr"]) * factor
    cfg = json.loads(row["config_json"])
    cfg["method"].update(name=method, lr=lr, **({} if r is None else {"r": r}))
    cfg["task"].update(name=task, split_seed=seed, test_size=n_test, train_size=n_train)
    cfg["model"]["name"], cfg["seed"] = model, seed
    config_json = json.dumps(cfg, sort_keys=True)
    acc_target = min(0.99, level * MODELS[model] + QUALITY[method] + 0.004 * np.log2(r or 8)
                     - 0.01 * abs(np.log2(factor)) + rng.normal(0, 0.01))
    labels, majority = test_set(preds, task, seed)
    right = rng.random(n_test) < acc_target
    predictions = np.where(right, labels, 1 - labels)
    acc = float(np.mean(predictions == labels))
    f1 = np.mean([2 * np.sum((predictions == k) & (labels == k))
                  / max(1, np.sum(predictions == k) + np.sum(labels == k)) for k in (0, 1)])
    jitter = float(rng.normal(1.0, 0.03))
    scale = (r or 8) / 8
    out = {**row, "run_id": hashlib.sha1(f"{i}-{config_json}".encode()).hexdigest()[:32],
           "config_hash": hashlib.sha256(config_json.encode()).hexdigest()[:16],
           "config_json": config_json, "task": task, "model": model, "method": method, "r": r,
           "lr": lr, "seed": seed, "sweep": f"week-day{day + 1}",
           "created_at": f"2026-11-{day + 1:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00+00:00",
           "accuracy": acc, "f1_micro": acc, "f1_macro": float(f1),
           "majority_accuracy": float(np.mean(majority == labels)), "n_test": n_test, "n_train": n_train,
           "trainable_params": int(row["trainable_params"] * scale),
           "adapter_bytes": int(row["adapter_bytes"] * scale),
           "peak_memory_bytes": int(row["peak_memory_bytes"] * jitter * (1 + 0.02 * scale)),
           "train_samples_per_s": float(row["train_samples_per_s"] * jitter),
           "train_tokens_per_s": float(row["train_tokens_per_s"] * jitter),
           "wall_s": float(row["wall_s"] * jitter), "train_s": float(row["train_s"] * jitter),
           "data_fingerprint": f"{row['data_fingerprint']}-{task}",
           "model_fingerprint": f"{row['model_fingerprint']}-{model}"}
    if rng.random() < FAILED_SHARE:
        keep = ("run_id", "config_hash", "config_json", "task", "model", "method", "r", "seed", "sweep",
                "created_at", "quant", "schema_version", "lr", "data_fingerprint", "model_fingerprint",
                "device_kind", "harness_version")  # failed in training: its data was read
        failed = {k: out[k] for k in keep} | {"status": "failed",
                                             "error": "OutOfMemoryError: CUDA out of memory"}
        return failed, [], {}
    curves = [{**c, "value": None if c["value"] is None else float(c["value"]) * jitter} for c in curves]
    return out, curves, {"test": {"labels": labels, "predictions": predictions, "majority": majority}}


def build_store(store: Path, n: int, tiny: Path) -> None:
    """``n`` replicated runs of the tiny store's templates, written through ``record``."""
    t = templates(tiny)
    rng = np.random.default_rng(20261206)
    target = open_store(store)
    for i, point in enumerate(grid(n)):
        row, curves, preds = synthetic_run(t[point[2]], point, i, i * DAYS // n, rng)
        target.record(typed(row), curves, preds)


def typed(row: dict) -> dict:
    """A row as read back by pandas (numpy scalars, NaN for NULL) made fit for ``record``."""
    from harness.fields import FIELDS

    cast = {"integer": int, "real": float, "bool": bool, "text": str}
    out = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and np.isnan(v)) or k not in FIELDS:
            continue
        out[k] = cast[FIELDS[k].type](v.item() if hasattr(v, "item") else v)
    return out


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


# Where a report's time goes: (module, function) of build_report's stages, timed in place.
STAGES = [("harness.report.build", n) for n in ("load", "select_runs", "load_predictions", "analyze",
                                                "load_curves")] + \
    [("harness.report.sections", n) for n in ("setup_rows", "pair_figures", "findings")] + \
    [("harness.report.tables", n) for n in ("comparison_table", "reference_table", "stats_frame")] + \
    [("harness.report.cost", n) for n in ("cost_table", "cost_frame", "cost_figure")] + \
    [("harness.report.markdown", "write_markdown"), ("harness.report.pdf", "write_pdf")]


def profile_report(store: Path, out: Path, top: int) -> dict[str, float]:
    """The report once more, in this process, each stage wrapped in a timer: {stage: seconds}
    (and, with ``top``, cProfile's top functions by cumulative time on stderr)."""
    import functools
    import importlib

    from harness.report.__main__ import main as report

    spent: dict[str, float] = {}

    def timed_stage(name, f):
        @functools.wraps(f)
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return run

    for module, name in STAGES:
        m = importlib.import_module(module)
        setattr(m, name, timed_stage(name, getattr(m, name)))
    start, prof = time.perf_counter(), cProfile.Profile() if top else None
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        (prof.runcall if prof else lambda f, *a: f(*a))(report, ["--store", str(store), "--out", str(out)])
    total = time.perf_counter() - start
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(top)
    return {"total (in this process)": total, **spent}


def measure(n: int, work: Path, tiny: Path, top: int) -> dict[str, float]:
    store = work / f"runs{n}.sqlite"
    start = time.perf_counter()
    if not store.exists():
        build_store(store, n, tiny)
    print(f"[bench] {n} runs: store built in {time.perf_counter() - start:.1f}s "
          f"({store.stat().st_size / 2**20:.1f} MiB)", flush=True)
    py = sys.executable
    out = {"report (python -m harness.report)": timed(
        [py, "-m", "harness.report", "--store", str(store), "--out", str(work / f"report{n}")]),
        "list (python -m harness.results list)": timed([py, "-m", "harness.results", "list",
                                                        "--store", str(store)]),
        "load() (in a fresh process)": timed([py, "-c", f"import harness.results as r; r.load({str(store)!r})"])}
    for k, v in out.items():
        print(f"[bench] {n} runs: {k}: {v:.1f}s", flush=True)
    stages = profile_report(store, work / f"profiled{n}", top)
    return {**out, **{f"  {k}": v for k, v in stages.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="1000,5000", help="store sizes, comma-separated")
    p.add_argument("--keep", default=None, help="a folder to build (and keep, or reuse) the stores in")
    p.add_argument("--profile", type=int, nargs="?", const=40, default=0,
                   help="also print the report's top functions by cumulative time (default 40)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        tiny = work / "tiny.sqlite"
        if not tiny.exists():
            tiny_runs(tiny, work)
        results = {int(n): measure(int(n), work, tiny, args.profile) for n in args.runs.split(",")}
    sizes = sorted(results)
    print("\nseconds" + "".join(f"{n:>12,} runs" for n in sizes))
    for key in dict.fromkeys(k for n in sizes for k in results[n]):
        print(f"{key:<45}" + "".join(f"{results[n].get(key, float('nan')):>17.1f}" for n in sizes))


if __name__ == "__main__":
    main()
