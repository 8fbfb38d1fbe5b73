"""Training speed and memory of the harness against plain loops, measured side by side.

    python experiments/bench_speed.py                   # throughput and memory, 3 rounds
    python experiments/bench_speed.py --sweep --refusal # + the default sweep's wall time and a refusal
    python experiments/bench_speed.py --rounds 1 --epochs 1 --extra task.train_size=256

Every variant trains the harness's default task and model (MiniLM on Rotten Tomatoes, 1,000
training examples, max_length 64, batch 32, r=8) on the same encoded examples, each in a fresh
process of its own (so that its peak memory is its own), the variants alternating round by round:

* ``plain_fp32_random``: the loop a user writes by hand: peft's LoRA, AdamW, linear warm-up,
  gradient clipping, fp32, random batches padded to their longest;
* ``plain_bf16_grouped``: the same loop with bf16 autocast (where the CPU has native bf16) and
  batches grouped by length (transformers' ``LengthGroupedSampler``);
* ``plain_dora_fp32_random`` / ``plain_dora_bf16_grouped``: the same two loops with peft's DoRA;
* ``harness_lora`` / ``harness_dora``: the harness's own setup and training loop
  (:func:`harness.run.pipeline.setup` and :func:`harness.run.pipeline.fit`) at its default settings.

Throughput counts the training steps only (no evaluation), as each run's ``train_samples_per_s``
does. The medians over rounds are printed with the ratios the speed goals are stated in.
``--sweep`` times ``python -m harness -m method=lora,dora,qlora`` with a fresh store and splits its
wall time into the runs' training, the rest of each run, and the command around them;
``--refusal`` times ``python -m harness method=lorra`` (refused before anything trains).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain_fp32_random", "plain_bf16_grouped", "plain_dora_fp32_random",
            "plain_dora_bf16_grouped", "harness_lora", "harness_dora")
PEFT_DORA_OVERHEAD = 1.26  # peft's docs: DoRA +26% training time against LoRA (3B model, GPU)
MiB = 2 ** 20


def run_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from harness.paths import conf_dir
    from harness.job.validation import register_schemas, validate

    register_schemas()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def plain(name: str, cfg) -> dict:
    """A hand-written loop on the harness's own encoded examples."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import DataLoader
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding,
                              get_linear_schedule_with_warmup)
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from harness.device import cpu_has_bf16
    from harness.models.sources import resolve_source
    from harness.tasks import load_task
    from harness.tasks.encoding import encode_split

    torch.manual_seed(cfg.seed)
    path = resolve_source(cfg.model.source)
    data = load_task(cfg.task)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    examples = encode_split(data.train, tok, cfg.task.max_length, cfg.task.truncation.value,
                            data.type).examples
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=data.num_labels)
    m = cfg.method
    model = get_peft_model(model, LoraConfig(
        r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout, use_dora="dora" in name,
        target_modules=list(cfg.model.target_modules), modules_to_save=list(cfg.model.head_modules),
        task_type="SEQ_CLS"))
    grouped = name.endswith("grouped")
    bf16 = grouped and cpu_has_bf16()
    collate = DataCollatorWithPadding(tok, padding="longest")
    g = torch.Generator().manual_seed(cfg.seed)
    bs = cfg.trainer.batch_size
    if grouped:
        sampler = LengthGroupedSampler(bs, lengths=[len(e["input_ids"]) for e in examples], generator=g)
        batches = DataLoader(examples, batch_size=bs, sampler=sampler, collate_fn=collate)
    else:
        batches = DataLoader(examples, batch_size=bs, shuffle=True, generator=g, collate_fn=collate)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=m.lr)
    total = len(batches) * cfg.trainer.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * total + 0.999), total)
    samples = tokens = padded = 0
    model.train()
    start = time.perf_counter()
    for _ in range(cfg.trainer.epochs):
        for batch in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.trainer.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            samples += len(batch["labels"])
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    seconds = time.perf_counter() - start
    return {"samples_per_s": samples / seconds, "tokens_per_s": tokens / seconds,
            "pad_waste": 1 - tokens / padded, "bf16": bf16, "train_s": seconds}


def harness_run(name: str, overrides: list[str]) -> dict:
    """The harness's own setup and training loop at its defaults."""
    import torch

    from harness.device import pick_device
    from harness.training.memory import PeakMemory
    from harness.run.pipeline import fit, setup
    from harness.tracking import Tracker

    cfg = run_config([f"method={name.split('_')[1]}", *overrides])
    device = pick_device(cfg.trainer.device.value)
    memory = PeakMemory(device, isolated=True).start()
    with memory.phase("setup"):
        s = setup(cfg, device)
    padded_tokens = sum(int(b["attention_mask"].numel()) for b in s.batches["train"])
    real_tokens = sum(int(b["attention_mask"].sum()) for b in s.batches["train"])
    trained = fit(s, cfg, Tracker(), memory)
    peaks = memory.stop()
    del torch
    return {"samples_per_s": trained.samples / trained.train_s,
            "tokens_per_s": trained.tokens / trained.train_s, "pad_waste": 1 - real_tokens / padded_tokens,
            "bf16": s.use_bf16, "train_s": trained.train_s,
            # the run's own peak: the kernel's mark is reset per phase, so ru_maxrss alone is not
            "peak_mib": peaks["peak_memory_bytes"] / MiB,
            "peak_train_mib": peaks["peak_memory_train_bytes"] / MiB,
            "peak_eval_mib": peaks["peak_memory_eval_bytes"] / MiB}


def one(name: str, overrides: list[str]) -> dict:
    """One variant in this process; its figures and this process's peak RSS."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from harness.quiet import quiet_libraries

    quiet_libraries()
    base = ["trainer.progress=false", *overrides]
    out = harness_run(name, base) if name.startswith("harness") else plain(name, run_config(base))
    out["peak_rss_mib"] = max(out.get("peak_mib", 0.0),
                              resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB)
    return out


def measure_variants(variants: list[str], rounds: int, overrides: list[str]) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants if r % 2 == 0 else variants[::-1]  # alternate, so drift hits all alike
        for name in order:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--extra", *overrides],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1} {name}: {results[name][-1]['samples_per_s']:.1f} samples/s",
                  file=sys.stderr, flush=True)
    return results


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report_variants(results: dict[str, list[dict]]) -> None:
    print(f"{'variant':26} {'samples/s':>10} {'tokens/s':>9} {'pad waste':>9} {'bf16':>5} {'peak MiB':>9}")
    for name, runs in results.items():
        print(f"{name:26} {med(runs, 'samples_per_s'):10.1f} {med(runs, 'tokens_per_s'):9.0f} "
              f"{med(runs, 'pad_waste'):9.1%} {str(runs[0]['bf16']):>5} {med(runs, 'peak_rss_mib'):9.0f}")
    h, naive, fast = (med(results[k], "samples_per_s") for k in
                      ("harness_lora", "plain_fp32_random", "plain_bf16_grouped"))
    print(f"\nharness default / naive plain loop:    {h / naive:.2f}x  (goal >= 1.5x)")
    print(f"harness default / fastest plain loop:  {h / fast:.2f}x  (goal >= 0.95x)")
    dora_plain = med(results["plain_fp32_random"], "samples_per_s") / med(results["plain_dora_fp32_random"], "samples_per_s")
    dora_fast = fast / med(results["plain_dora_bf16_grouped"], "samples_per_s")
    dora_h = h / med(results["harness_dora"], "samples_per_s")
    print(f"DoRA time / LoRA time: plain fp32 {dora_plain:.2f}x, plain bf16 grouped {dora_fast:.2f}x, "
          f"harness {dora_h:.2f}x (peft documents {PEFT_DORA_OVERHEAD:.2f}x on a 3B model)")
    hr = results["harness_lora"]
    print(f"peak memory, harness / plain loop (same settings, bf16 grouped): "
          f"{med(hr, 'peak_rss_mib') / med(results['plain_bf16_grouped'], 'peak_rss_mib'):.2f}x; "
          f"harness phases: train {med(hr, 'peak_train_mib'):.0f} MiB, eval {med(hr, 'peak_eval_mib'):.0f} MiB")


def time_sweep(overrides: list[str]) -> None:
    from harness.results import load

    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "results.sqlite"
        cmd = [sys.executable, "-m", "harness", "-m", "method=lora,dora,qlora", f"store.url={store}",
               f"hydra.sweep.dir={Path(folder) / 'sweep'}", "trainer.progress=false", *overrides]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        wall = time.perf_counter() - start
        rows = load(store, decode=False)
    train, runs = rows["train_s"].sum(), rows["wall_s"].sum()
    print(f"\npython {' '.join(cmd[1:5])}: {wall:.1f} s wall (goal <= 120 s)")
    for _, r in rows.sort_values("method").iterrows():
        print(f"  {r['method']:6} {r['precision']:14} acc {r['accuracy']:.4f}  run {r['wall_s']:5.1f} s ="
              f" setup {r['setup_s']:4.1f} + train {r['train_s']:5.1f} + eval {r['eval_s']:4.1f} + other "
              f"{r['wall_s'] - r['setup_s'] - r['train_s'] - r['eval_s']:4.1f}  "
              f"({r['train_samples_per_s']:.1f} samples/s)")
    setup, evals = rows["setup_s"].sum(), rows["eval_s"].sum()
    print(f"  {wall:.1f} s = training {train:.1f} + setup {setup:.1f} + evaluation, latency and saving "
          f"{evals:.1f} + other in-run {runs - train - setup - evals:.1f} + the command around the runs "
          f"(start, checks, fork server, report) {wall - runs:.1f}")


def time_refusal() -> None:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness", "method=lorra"], cwd=ROOT,
                              capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 2, proc.stderr
    print(f"\npython -m harness method=lorra: refused (exit 2) in {statistics.median(times):.2f} s "
          f"(median of 3; goal <= 3 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--sweep", action="store_true", help="time the default three-method sweep")
    parser.add_argument("--refusal", action="store_true", help="time a refused command line")
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--extra", nargs="*", default=[], help="config overrides for every variant")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.extra)))
        return
    import platform

    print(f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}; "
          f"{args.rounds} round(s) of {args.epochs} epoch(s); overrides: {args.extra or 'none'}")
    if args.variants:
        overrides = [f"trainer.epochs={args.epochs}", *args.extra]
        results = measure_variants(args.variants, args.rounds, overrides)
        if set(results) == set(VARIANTS):
            report_variants(results)
        else:
            for name, runs in results.items():
                print(f"{name:26} {med(runs, 'samples_per_s'):10.1f} samples/s")
    if args.sweep:
        time_sweep(args.extra)
    if args.refusal:
        time_refusal()


if __name__ == "__main__":
    main()
