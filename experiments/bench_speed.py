"""Training speed and memory of the harness against plain loops and transformers' Trainer, side by side.

    python experiments/bench_speed.py                   # throughput and memory, 3 rounds
    python experiments/bench_speed.py --sweep --refusal # + the default sweep's wall time and a refusal
    python experiments/bench_speed.py --rounds 1 --epochs 1 --extra task.train_size=256
    python experiments/bench_speed.py --fast-paths      # + each fast path against the run without it
    python experiments/bench_speed.py --fast-paths task.train_size=32 task.val_size=8  # prompt task's sizes

Every variant trains the harness's default task and model (MiniLM on Rotten Tomatoes, 1,000
training examples, max_length 64, batch 32, r=8) on the same encoded examples, each in a fresh
process of its own (so that its peak memory is its own), the variants alternating round by round:

* ``plain_fp32_random``: the loop a user writes by hand: peft's LoRA, AdamW, linear warm-up,
  gradient clipping, fp32, random batches padded to their longest;
* ``plain_bf16_grouped``: the same loop with bf16 autocast (where the CPU has native bf16) and
  batches grouped by length (transformers' ``LengthGroupedSampler``);
* ``plain_dora_fp32_random`` / ``plain_dora_bf16_grouped``: the same two loops with peft's DoRA;
* ``harness_lora`` / ``harness_dora``: the harness's own setup and training loop
  (:func:`harness.run.pipeline.setup` and :func:`harness.run.pipeline.fit`) at its default settings;
* ``trainer_lora``: the tool a user would otherwise pick: transformers' ``Trainer`` with peft's LoRA
  at the same settings (lr, warm-up ratio, clipping, bf16 where the CPU has it, grouped by length;
  no evaluation, no checkpoints; its default optimizer), timed over Trainer's own
  ``train_runtime`` (its epochs; the time of all of ``trainer.train()`` is reported beside it).

``--fast-paths`` adds, each in its own process too, the harness with one fast path on against
``harness_lora`` or its own baseline: ``harness_lora_compile`` (``trainer.compile=true``, the
compile time inside its training time), ``harness_lora_numpy_dropout`` and
``harness_dora_numpy_dropout`` (``trainer.dropout_rng=numpy``, against ``harness_lora`` and
``harness_dora``) and, on ``model=smollm2 task=rotten_tomatoes_prompt`` at
small sizes (the flag's values, default ``task.train_size=64 task.val_size=16``, applied after
``--extra``), ``harness_prompt`` against ``harness_prompt_packing`` (``trainer.packing=true``).

Throughput counts the training steps only (no evaluation), as each run's ``train_samples_per_s``
does. The medians over rounds are printed with the ratios the speed goals are stated in, then
harness default / ``Trainer``, and with ``--fast-paths`` compile / eager, numpy / torch dropout
masks and packed / padded.
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
CORE = ("plain_fp32_random", "plain_bf16_grouped", "plain_dora_fp32_random",
        "plain_dora_bf16_grouped", "harness_lora", "harness_dora")
VARIANTS = (*CORE, "trainer_lora")  # run by default
# Run only when named (--variants): harness_lora with its peak memory also sampled every 10 ms by
# a thread (PeakMemory(poll=True)), as it was before the kernel's high-water mark alone measured it.
EXTRA = ("harness_lora_polled",)
FAST_PATHS = ("harness_lora_compile", "harness_lora_numpy_dropout", "harness_dora_numpy_dropout",
              "harness_prompt", "harness_prompt_packing")  # --fast-paths
PROMPT_TASK = ["model=smollm2", "task=rotten_tomatoes_prompt"]
# Each harness variant's own overrides, before those every variant gets.
HARNESS = {"harness_lora": ["method=lora"], "harness_dora": ["method=dora"],
           "harness_lora_polled": ["method=lora"],
           "harness_lora_compile": ["method=lora", "trainer.compile=true"],
           "harness_lora_numpy_dropout": ["method=lora", "trainer.dropout_rng=numpy"],
           "harness_dora_numpy_dropout": ["method=dora", "trainer.dropout_rng=numpy"],
           "harness_prompt": ["method=lora", *PROMPT_TASK],
           "harness_prompt_packing": ["method=lora", *PROMPT_TASK, "trainer.packing=true"]}
# The prompt task's sizes (--fast-paths' default), after every variant's overrides: one round of
# the two prompt variants in about 2 minutes on 2 CPU cores.
PROMPT_SIZES = ["task.train_size=64", "task.val_size=16"]
PEFT_DORA_OVERHEAD = 1.26  # peft's docs: DoRA +26% training time against LoRA (3B model, GPU)
MiB = 2 ** 20


def run_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from harness.paths import conf_dir
    from harness.job.validation import register_schemas, validate

    register_schemas()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def encoded(cfg) -> tuple:
    """The model's path, its tokenizer, the task's encoded training examples and its labels."""
    import torch
    from transformers import AutoTokenizer

    from harness.models.sources import resolve_source
    from harness.tasks import load_task
    from harness.tasks.encoding import encode_split

    torch.manual_seed(cfg.seed)
    path = resolve_source(cfg.model.source)
    data = load_task(cfg.task)
    tok = AutoTokenizer.from_pretrained(path)
    examples = encode_split(data.train, tok, cfg.task.max_length, cfg.task.truncation.value,
                            data.type).examples
    return path, tok, examples, data.num_labels


def lora_model(cfg, path: str, num_labels: int, dora: bool):
    """MiniLM with peft's LoRA (or DoRA) at the method config's r, alpha, dropout and targets."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    m = cfg.method
    return get_peft_model(model, LoraConfig(
        r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout, use_dora=dora,
        target_modules=list(cfg.model.target_modules), modules_to_save=list(cfg.model.head_modules),
        task_type="SEQ_CLS"))


def plain(name: str, cfg) -> dict:
    """A hand-written loop on the harness's own encoded examples."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from harness.device import cpu_has_bf16

    path, tok, examples, num_labels = encoded(cfg)
    model = lora_model(cfg, path, num_labels, dora="dora" in name)
    m = cfg.method
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


class CountingCollator:
    """Batches padded to their longest (``DataCollatorWithPadding``), counting real and padded tokens."""

    def __init__(self, tok) -> None:
        from transformers import DataCollatorWithPadding

        self.collate, self.tokens, self.padded = DataCollatorWithPadding(tok, padding="longest"), 0, 0

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        self.tokens += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def trainer_arguments(cfg, out: str, bf16: bool):
    """``TrainingArguments`` at the harness's defaults: no evaluation, no checkpoints, no logging
    integrations. transformers 5 names two of them differently from 4.x."""
    from transformers import TrainingArguments

    t, m = cfg.trainer, cfg.method
    fields = TrainingArguments.__dataclass_fields__
    renamed = ({"group_by_length": True} if "group_by_length" in fields
               else {"train_sampling_strategy": "group_by_length"})
    renamed |= ({"warmup_ratio": t.warmup_ratio} if "warmup_ratio" in fields
                else {"warmup_steps": t.warmup_ratio})  # a float < 1: a share of the steps
    return TrainingArguments(
        output_dir=out, per_device_train_batch_size=t.batch_size, num_train_epochs=t.epochs,
        learning_rate=m.lr, weight_decay=m.weight_decay, lr_scheduler_type="linear",
        max_grad_norm=t.max_grad_norm, bf16=bf16, eval_strategy="no", save_strategy="no",
        report_to=[], disable_tqdm=True, dataloader_num_workers=0, use_cpu=True, seed=cfg.seed,
        **renamed)


def trainer_lora(cfg) -> dict:
    """transformers' ``Trainer`` with peft's LoRA on the same encoded examples: the tool a user
    would otherwise pick. Throughput over Trainer's own training window (``train_runtime``: its
    epochs, from after its optimizer and data loader are made, as the harness's ``train_s``);
    ``outer_s`` is all of ``trainer.train()``."""
    from transformers import Trainer

    from harness.device import cpu_has_bf16

    path, tok, examples, num_labels = encoded(cfg)
    model = lora_model(cfg, path, num_labels, dora=False)
    collate, bf16 = CountingCollator(tok), cpu_has_bf16()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=trainer_arguments(cfg, out, bf16),
                          train_dataset=examples, data_collator=collate)
        start = time.perf_counter()
        metrics = trainer.train().metrics
        outer = time.perf_counter() - start
    seconds, samples = metrics["train_runtime"], len(examples) * cfg.trainer.epochs
    return {"samples_per_s": samples / seconds, "tokens_per_s": collate.tokens / seconds,
            "pad_waste": 1 - collate.tokens / collate.padded, "bf16": bf16, "train_s": seconds,
            "outer_s": outer, "outer_samples_per_s": samples / outer, "steps": trainer.state.global_step,
            "optim": getattr(trainer.args.optim, "value", str(trainer.args.optim))}


def harness_run(name: str, overrides: list[str]) -> dict:
    """The harness's own setup and training loop at its defaults, with the variant's own
    overrides (``HARNESS``)."""
    import torch

    from harness.device import pick_device
    from harness.training.memory import PeakMemory
    from harness.run.pipeline import fit, setup
    from harness.tracking import Tracker

    cfg = run_config([*HARNESS[name], *overrides])
    device = pick_device(cfg.trainer.device.value)
    memory = PeakMemory(device, isolated=True, poll=name == "harness_lora_polled").start()
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
    if name.startswith("harness"):
        out = harness_run(name, base)
    else:
        cfg = run_config(base)
        out = trainer_lora(cfg) if name == "trainer_lora" else plain(name, cfg)
    out["peak_rss_mib"] = max(out.get("peak_mib", 0.0),
                              resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB)
    return out


def measure_variants(variants: list[str], rounds: int, overrides: list[str],
                     own: dict[str, list[str]] | None = None) -> dict[str, list[dict]]:
    """Each variant in a fresh process per round; ``own``: a variant's overrides after ``overrides``."""
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants if r % 2 == 0 else variants[::-1]  # alternate, so drift hits all alike
        for name in order:
            extra = [*overrides, *(own or {}).get(name, [])]
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--extra", *extra],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1} {name}: {results[name][-1]['samples_per_s']:.1f} samples/s",
                  file=sys.stderr, flush=True)
    return results


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(results: dict[str, list[dict]], names) -> None:
    print(f"{'variant':26} {'samples/s':>10} {'tokens/s':>9} {'pad waste':>9} {'bf16':>5} {'peak MiB':>9}")
    for name in names:
        runs = results[name]
        print(f"{name:26} {med(runs, 'samples_per_s'):10.1f} {med(runs, 'tokens_per_s'):9.0f} "
              f"{med(runs, 'pad_waste'):9.1%} {str(runs[0]['bf16']):>5} {med(runs, 'peak_rss_mib'):9.0f}")


def report(results: dict[str, list[dict]], prompt: list[str]) -> None:
    """The default variants' table and ratios (a plain list for a subset), then the fast paths'."""
    rest = {k: v for k, v in results.items() if k not in FAST_PATHS}
    if set(CORE) <= set(rest):
        report_variants(rest)
    else:
        for name, runs in rest.items():
            print(f"{name:26} {med(runs, 'samples_per_s'):10.1f} samples/s")
    if set(FAST_PATHS) & set(results):
        report_fast_paths(results, prompt)


def report_variants(results: dict[str, list[dict]]) -> None:
    table(results, results)
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
    if "trainer_lora" in results:
        report_trainer(results)


def report_trainer(results: dict[str, list[dict]]) -> None:
    tr, hr = results["trainer_lora"], results["harness_lora"]
    h = med(hr, "samples_per_s")
    print(f"harness default / transformers.Trainer: {h / med(tr, 'samples_per_s'):.2f}x samples/s "
          f"(Trainer's train_runtime; all of trainer.train(): {h / med(tr, 'outer_samples_per_s'):.2f}x); peak memory "
          f"{med(hr, 'peak_rss_mib') / med(tr, 'peak_rss_mib'):.2f}x (train phase "
          f"{med(hr, 'peak_train_mib') / med(tr, 'peak_rss_mib'):.2f}x; Trainer optim {tr[0]['optim']})")


def report_fast_paths(results: dict[str, list[dict]], prompt: list[str]) -> None:
    """Each fast path against the same run without it: compile on the default task (its compile
    time is inside its training time), packing on the causal-LM prompt task."""
    print(f"\nfast paths: trainer.compile=true and trainer.dropout_rng=numpy on the default task; "
          f"trainer.packing=true on {' '.join([*PROMPT_TASK, *prompt])}")
    table(results, [n for n in ("harness_lora", "harness_dora", *FAST_PATHS) if n in results])
    for label, fast, base in (("compile / eager", "harness_lora_compile", "harness_lora"),
                              ("LoRA numpy / torch dropout masks", "harness_lora_numpy_dropout", "harness_lora"),
                              ("DoRA numpy / torch dropout masks", "harness_dora_numpy_dropout", "harness_dora"),
                              ("packed / padded", "harness_prompt_packing", "harness_prompt")):
        if fast in results and base in results:
            f, b = results[fast], results[base]
            print(f"{label}: {med(f, 'samples_per_s') / med(b, 'samples_per_s'):.2f}x samples/s, "
                  f"{med(f, 'tokens_per_s') / med(b, 'tokens_per_s'):.2f}x tokens/s, peak memory "
                  f"{med(f, 'peak_rss_mib') / med(b, 'peak_rss_mib'):.2f}x (train phase "
                  f"{med(f, 'peak_train_mib') / med(b, 'peak_train_mib'):.2f}x)")


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
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=(*VARIANTS, *FAST_PATHS, *EXTRA))
    parser.add_argument("--sweep", action="store_true", help="time the default three-method sweep")
    parser.add_argument("--refusal", action="store_true", help="time a refused command line")
    parser.add_argument("--fast-paths", nargs="*", metavar="OVERRIDE",
                        help="also run the fast-path variants (and harness_lora); the prompt task's "
                             f"overrides, after --extra (default: {' '.join(PROMPT_SIZES)})")
    parser.add_argument("--one", choices=(*VARIANTS, *FAST_PATHS, *EXTRA), help=argparse.SUPPRESS)
    parser.add_argument("--extra", nargs="*", default=[], help="config overrides for every variant")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.extra)))
        return
    import platform

    print(f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}; "
          f"{args.rounds} round(s) of {args.epochs} epoch(s); overrides: {args.extra or 'none'}")
    variants, prompt = list(args.variants), args.fast_paths or PROMPT_SIZES
    if args.fast_paths is not None:
        variants += [v for v in ("harness_lora", "harness_dora", *FAST_PATHS) if v not in variants]
    if {"harness_prompt", "harness_prompt_packing"} & set(variants):
        print(f"prompt task: {' '.join([*PROMPT_TASK, *prompt])} (after the overrides)")
    if variants:
        overrides = [f"trainer.epochs={args.epochs}", *args.extra]
        own = {v: prompt for v in FAST_PATHS if v.startswith("harness_prompt")}
        report(measure_variants(variants, args.rounds, overrides, own), prompt)
    if args.sweep:
        time_sweep(args.extra)
    if args.refusal:
        time_refusal()


if __name__ == "__main__":
    main()
