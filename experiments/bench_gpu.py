"""The GPU check, the first thing to run where a GPU is at hand: LoRA, DoRA and QLoRA on Llama-3.2-1B and
Llama-3.1-8B (random weights, torchtune's single-device settings) through the harness's own code, then
the GPU tests. ``python experiments/bench_gpu.py`` (one H100: within 8 minutes); ``--tiny --no-pytest``:
2-layer models of the same configs on the CPU, a few steps (tests/test_bench_gpu.py).

Each model is built once from its published config.json (harness/plan/anchors/<model>) with random bf16
weights and a small local tokenizer ($PEFT_HARNESS_CACHE/bench_gpu) and loaded by harness.models.load as
any model folder (QLoRA: 4-bit through BitsAndBytesConfig). Each (model, method) trains in a fresh process
with a time limit, on random token batches: tokens/s after the warm-up, MFU (harness.training.flops), the
training steps' peak allocated and reserved CUDA memory (CPU: resident set) and the planner's prediction
for the same overrides. A configuration that fails is a row with its error. Writes bench_gpu.md and
bench_gpu.json to --out; exits 1 if a configuration or the GPU tests failed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness of this checkout, installed or not
ANCHORS = ROOT / "harness" / "plan" / "anchors"
GIB = 1024 ** 3
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# torchtune's single-device recipes (https://github.com/pytorch/torchtune, recipes/configs/). Llama-3.1-8B:
# as at 30b8519e, the commit of the README's memory table: llama3_1/8B_lora_single_device.yaml (lora_rank 8,
# lora_alpha 16, lora_attn_modules [q_proj, v_proj], no MLP, batch_size 2, enable_activation_checkpointing
# True) and 8B_qlora_single_device.yaml (the same, on [q_proj, v_proj, k_proj, output_proj] + MLP: every
# linear layer); the table measures batch 2 "packed to sequence length 2048". (Today's 8B LoRA recipe
# adds output_proj and the MLP; its QLoRA drops k_proj.) Llama-3.2-1B, as at bd2a0fc7:
# llama3_2/1B_lora_single_device.yaml and 1B_qlora_single_device.yaml: lora_rank 64, lora_alpha 128,
# [q_proj, v_proj, output_proj] + MLP, batch_size 4, no activation checkpointing, max_seq_len null
# (unpacked alpaca): 2048 here, as for the 8B. DoRA: LoRA's settings (no torchtune DoRA recipe here).
# The loss, as those recipes' CEWithChunkedOutputLoss (8 chunks): trainer.loss_chunk_tokens = batch x seq / 8.
RECIPES = {
    "llama-3.1-8b": {"seq": 2048, "batch": 2, "ckpt": True,
                     "lora": (8, 16, ["q_proj", "v_proj"]), "qlora": (8, 16, ALL_LINEAR)},
    "llama-3.2-1b": {"seq": 2048, "batch": 4, "ckpt": False,
                     "lora": (64, 128, ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])},
}
# torchtune README.md, "Memory and training speed" (batch 2, packed to 2048, torch.compile on, one RTX 4090;
# since 30b8519e, unchanged at bd2a0fc7): "Peak Memory per GPU" (GiB) and tokens/s. Nothing for the 1B.
PUBLISHED_GIB = {("llama-3.1-8b", "lora"): 16.2, ("llama-3.1-8b", "qlora"): 7.4}
PUBLISHED_TOKENS_S_4090 = {("llama-3.1-8b", "lora"): 3083, ("llama-3.1-8b", "qlora"): 2413}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}  # the vocabulary stays the model's own
PYTEST = ["-m", "pytest", "-m", "gpu", "-q", "-n", "0", "tests/test_gpu.py"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
PYTEST_RESERVE_S = 150  # of --budget-s, kept for the GPU tests (start, CUDA and bitsandbytes, six tests)
COLUMNS = ["model", "method", "seq", "batch", "ckpt", "steps", "tokens/s", "TFLOP/s", "MFU",
           "peak alloc GiB", "peak reserved GiB", "planner GiB", "planner error", "torchtune GiB", "note"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU, 2-layer models of the same family, a few steps")
    p.add_argument("--models", default="llama-3.2-1b,llama-3.1-8b")
    p.add_argument("--methods", default="lora,qlora,dora", help="in this order for each model (QLoRA "
                   "before DoRA: torchtune publishes QLoRA's figures, not DoRA's)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10; --tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="steps before timing (default 3; --tiny 1)")
    p.add_argument("--no-pytest", action="store_true", help="skip python -m pytest -m gpu")
    p.add_argument("--out", default="outputs/bench_gpu")
    p.add_argument("--cap-s", type=float, default=150.0, help="time limit of one configuration's process")
    p.add_argument("--budget-s", type=float, default=450.0, help="the whole command's time; what would "
                   "not start in time is skipped and said so")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in RECIPES]
    if unknown and not args.child:
        p.error(f"--models: no recipe for {', '.join(unknown)} (known: {', '.join(RECIPES)})")
    args.steps = args.steps or (2 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    return args


def model_config(model: str, tiny: bool) -> dict:
    config = json.loads((ANCHORS / model / "config.json").read_text())
    return {**config, **TINY} if tiny else config


def settings(model: str, method: str, tiny: bool) -> dict:
    recipe = RECIPES[model]
    r, alpha, targets = recipe.get(method, recipe["lora"])
    return {"seq": 64 if tiny else recipe["seq"], "batch": recipe["batch"], "ckpt": recipe["ckpt"],
            "r": r, "alpha": alpha, "targets": targets}


def overrides(model: str, method: str, folder: str, s: dict, device: str, steps: int) -> list[str]:
    """The run's harness overrides: what the training process and the planner both compose."""
    out = ["model=llama", f"model.source={folder}", f"model.name={model}", "task=rotten_tomatoes_prompt",
           f"method={method}", f"method.r={s['r']}", f"method.alpha={s['alpha']}", "method.dropout=0",
           f"method.target_modules=[{','.join(s['targets'])}]", f"trainer.batch_size={s['batch']}",
           f"task.max_length={s['seq']}", f"trainer.gradient_checkpointing={str(s['ckpt']).lower()}",
           "model.dtype=bfloat16", f"trainer.device={device}", "trainer.autocast=auto",
           f"trainer.max_steps={steps}", "trainer.epochs=1", "trainer.progress=false",
           f"trainer.loss_chunk_tokens={max(1, s['batch'] * s['seq'] // 8)}"]
    if method in ("qlora", "qdora"):  # bf16 compute for the 4-bit base, as torchtune's bf16 recipes
        out.append("quant.compute_dtype=bfloat16")
    return out


# --- in a child process: build a model folder, or train one configuration -----------------------

def write_weights(config: dict, folder: Path) -> int:
    """Random bf16 weights of ``config``'s causal LM (normal, std = initializer_range; norms 1) in
    safetensors shards of up to 2 GiB with their index; made on the GPU where there is one."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    shapes = {n: t.shape for n, t in model.state_dict().items()
              if not (config.get("tie_word_embeddings") and n == "lm_head.weight")}
    shard, index, total, std = {}, {}, 0, float(config.get("initializer_range", 0.02))

    def flush():
        name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        index.update({k: name for k in shard})
        shard.clear()

    for name, shape in shapes.items():
        t = torch.empty(shape, dtype=torch.bfloat16, device=device)
        t.fill_(1.0) if t.dim() == 1 else t.normal_(0.0, std)
        shard[name] = t.cpu()
        total += t.numel() * 2
        if sum(v.numel() * 2 for v in shard.values()) >= 2 * GIB:
            flush()
    if shard:
        flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": index}, indent=1))
    return total


def build_model(spec: dict) -> dict:
    """The model's folder (config.json, weights, tokenizer), built once; and the device's name and
    memory, read here so that the parent process never starts CUDA."""
    import torch

    from harness.models.load import _tiny_tokenizer
    from harness.training.flops import device_name

    folder, start = Path(spec["folder"]), time.perf_counter()
    if not (folder / "config.json").is_file():
        for left in folder.parent.glob(f"{folder.name}.tmp*"):  # a build killed at its time limit
            shutil.rmtree(left, ignore_errors=True)
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        write_weights(spec["config"], tmp)
        _tiny_tokenizer().save_pretrained(tmp)  # any tokenizer: the batches are random ids
        (tmp / "config.json").write_text(json.dumps(spec["config"]))
        os.replace(tmp, folder)
    cuda = torch.cuda.is_available() and not spec["tiny"]
    return {"folder": str(folder), "build_s": time.perf_counter() - start,
            "device": torch.cuda.get_device_name(0) if cuda else device_name(torch.device("cpu")),
            "device_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None}


def random_batches(cfg, kind, tokenizer, vocab: int, n_batches: int):
    """Random token rows of the configured length, every token but the first a target (the loss's
    logits cover the whole sequence, as a recipe's), batched by the harness's loader and collator."""
    import torch

    from harness.training.loop import loader

    seq, batch = cfg.task.max_length, cfg.trainer.batch_size
    ids = torch.randint(0, vocab, (batch * n_batches, seq), generator=torch.Generator().manual_seed(cfg.seed))
    examples = [{"input_ids": row, "attention_mask": [1] * seq, "n_prompt": 1, "answer": "x"}
                for row in ids.tolist()]
    kind.prepare(tokenizer, examples)
    collate = kind.collator(tokenizer)
    return examples, collate, loader(examples, tokenizer, batch, False, cfg.seed, collate)


def timed_steps(run, batches, device, warmup: int, deadline: float, stamp=None) -> list[float]:
    """The harness's own training step (``_Training.take_step``) on each batch, timed; stops early
    once past ``deadline`` with at least one timed step. ``stamp`` gets every step's time as it
    is taken (what a configuration killed at its time limit leaves)."""
    from harness.device import sync

    times = []
    run.model.train()
    for run.batch in batches:
        sync(device)
        start = time.perf_counter()
        run.take_step()
        sync(device)
        times.append(time.perf_counter() - start)
        if stamp is not None:
            stamp(step_times_s=list(times))
        if len(times) > warmup and time.time() > deadline:
            break
    return times[warmup:]


class Progress:
    """What a configuration's process has done so far, written beside its spec at every stamp
    (``<name>.progress.json``): the parent reads it when the process is killed at its time limit,
    so a slow configuration still says how far it got and how long its steps took."""

    def __init__(self, spec: dict) -> None:
        self.path = Path(spec["path"]).with_suffix(".progress.json") if spec.get("path") else None
        self.began, self.seen = time.perf_counter(), {}

    def __call__(self, **values) -> None:
        self.seen.update(values)
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.seen))
            os.replace(tmp, self.path)


def train_config(spec: dict) -> dict:
    """One configuration, as a run sets it up (harness.run.pipeline.build: the loader, gradient
    checkpointing, the method from the registry; the method's optimizer; the loop's step)."""
    from harness.device import pick_device, wants_bf16
    from harness.methods import TrainingStart
    from harness.plan.compose import configs
    from harness.run.pipeline import build
    from harness.tasks.types import task_type
    from harness.tracking import Tracker
    from harness.training import flops
    from harness.training.loop import _Training
    from harness.training.memory import PeakMemory

    cfg = configs(spec["overrides"])[0]
    device = pick_device(cfg.trainer.device.value)
    memory = PeakMemory(device, isolated=True).start()
    kind, bf16 = task_type(cfg.task.task_type).for_task(cfg.task), wants_bf16(cfg, device)
    if cfg.trainer.loss_chunk_tokens is not None:  # as harness.run.pipeline.setup sets it
        kind.loss_chunk = cfg.trainer.loss_chunk_tokens
    stamp = Progress(spec)
    with memory.phase("setup"):
        loaded, adapted = build(cfg, kind, 2, device)
        examples, collate, batches = random_batches(cfg, kind, loaded.tokenizer, spec["vocab"], cfg.trainer.max_steps)
        adapted.before_training(TrainingStart(len(batches), batches, device))
        run = _Training(adapted, batches, None, cfg, device, 0, bf16, Tracker(), kind,
                        lambda name: contextlib.nullcontext(), None)
        run.prepare()  # the method's optimizer and the schedule
    stamp(loaded_s=time.perf_counter() - stamp.began)
    with memory.phase("count", in_run=False):  # as harness.run.pipeline.execute: not the run's peak
        counted = flops.count_training_step(adapted, kind, examples, collate, cfg.trainer.batch_size, device, bf16)
    stamp(counted_s=time.perf_counter() - stamp.began)
    with memory.phase("train"):
        times = timed_steps(run, batches, device, spec["warmup"], spec["deadline"], stamp)
    peaks, train = memory.stop(), memory.phases["train"]
    tokens_per_s = cfg.trainer.batch_size * cfg.task.max_length * len(times) / sum(times)
    base = [p for n, p in adapted.model.named_parameters() if "lora_" not in n]
    return {**stamp.seen, "steps": len(times), "warmup": spec["warmup"], "step_s": sorted(times)[len(times) // 2],
            "tokens_per_s": tokens_per_s, "precision": "bf16_autocast" if bf16 else "fp32",
            **flops.mfu_fields(counted, tokens_per_s, device, bf16),
            "memory_kind": peaks["memory_kind"], "baseline_cpu_rss_bytes": peaks["baseline_cpu_rss_bytes"],
            "train_peak_bytes": memory.phase_peak("train"), "run_peak_bytes": peaks["peak_memory_bytes"],
            "train_reserved_bytes": train.get("cuda_reserved") if device.type == "cuda" else None,
            "run_reserved_bytes": peaks.get("peak_cuda_reserved_bytes"),
            "loss_chunk_tokens": kind.loss_chunk,
            "trainable_params": sum(p.numel() for p in adapted.model.parameters() if p.requires_grad),
            "fp32_base_params": sum(p.numel() for p in base if str(p.dtype) == "torch.float32")}


def child(path: str) -> int:
    """Run the spec in ``path`` (build or train) and write its result, or its error, beside it."""
    spec = json.loads(Path(path).read_text())
    try:
        out = build_model(spec) if spec["what"] == "build" else train_config(spec)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the row's one-line error
        out = {"error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"}
    Path(path).with_suffix(".result.json").write_text(json.dumps(out))
    return 0


# --- the parent: a process per configuration, the planner, the table ------------------------------

def spawn(spec: dict, workdir: Path, timeout: float) -> dict:
    """``spec`` run by a fresh ``--child`` process within ``timeout`` seconds: its result, or its
    error in one line (a time-out, a crash without a result)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{spec['name']}.json"
    for stale in (".result.json", ".progress.json"):
        path.with_suffix(stale).unlink(missing_ok=True)
    path.write_text(json.dumps({**spec, "path": str(path)}))
    env = {**os.environ, **OFFLINE, "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(path)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        progress = path.with_suffix(".progress.json")
        seen = json.loads(progress.read_text()) if progress.is_file() else {}
        steps = seen.get("step_times_s") or []
        how_far = (f"after {len(steps)} step(s) of median {sorted(steps)[len(steps) // 2]:.2f} s" if steps
                   else "after loading and counting" if "counted_s" in seen
                   else "after loading" if "loaded_s" in seen else "before the model was loaded")
        path.with_suffix(".log").write_text(_text(exc.stdout) + _text(exc.stderr))
        return {**seen, "error": f"timed out after {timeout:.0f} s (this configuration's time limit), {how_far}"}
    if path.with_suffix(".result.json").is_file():
        return json.loads(path.with_suffix(".result.json").read_text())
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return {"error": f"exit {done.returncode}: {lines[-1][:300] if lines else 'no output'}"}


def _text(output) -> str:
    """A killed process's captured output (bytes or text, or None)."""
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def planned(overs: list[str]) -> tuple[float | None, str]:
    """The planner's predicted peak (bytes, no runtime) for the same overrides, or why not."""
    try:
        from harness.plan import estimate
        from harness.plan.compose import configs

        return estimate(configs(overs)[0]).total, ""
    except Exception as exc:  # noqa: BLE001 - a planner failure is a note, not the end of the bench
        return None, f"planner: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def make_row(model: str, method: str, s: dict, result: dict, plan: float | None, note: str) -> dict:
    """One row: the settings, the child's figures, the planner against the training steps' peak
    (on CPU the planner's training memory plus the child's resident set before loading, as
    ``python -m harness.plan --validate`` compares), torchtune's published figure."""
    row = {"model": model, "method": method, **{k: s[k] for k in ("seq", "batch", "ckpt", "r", "alpha", "targets")},
           "published_gib": PUBLISHED_GIB.get((model, method)),
           "published_tokens_s_4090": PUBLISHED_TOKENS_S_4090.get((model, method)), **result}
    if plan is not None:
        cpu = result.get("memory_kind") == "cpu_rss"
        row["planner_bytes"] = plan + ((result.get("baseline_cpu_rss_bytes") or 0) if cpu else 0)
        measured = result.get("train_peak_bytes")
        row["planner_error"] = row["planner_bytes"] / measured - 1 if measured else None
    row["note"] = "; ".join(n for n in (result.get("error"), result.get("skipped"), note) if n)
    return row


def one_config(model: str, method: str, built: dict, args, left: float, workdir: Path) -> dict:
    s = settings(model, method, args.tiny)
    device = "cpu" if args.tiny else "cuda"
    overs = overrides(model, method, built.get("folder", ""), s, device, args.warmup + args.steps)
    plan, note = planned(overs) if not built.get("error") and left >= 20 else (None, "")
    if built.get("error"):
        result = {"error": f"building the model: {built['error']}"}
    elif left < 20:
        result = {"skipped": f"skipped: {max(left, 0):.0f} s left of --budget-s {args.budget_s:.0f}"}
    elif plan and built.get("device_bytes") and plan > 1.5 * built["device_bytes"]:
        result = {"skipped": f"skipped: the planner predicts {plan / GIB:.1f} GiB on a "
                             f"{built['device_bytes'] / GIB:.1f} GiB card"}
    else:
        timeout = min(args.cap_s, left)
        vocab = model_config(model, args.tiny)["vocab_size"]
        result = spawn({"what": "train", "name": f"{model}-{method}", "overrides": overs, "vocab": vocab,
                        "warmup": args.warmup, "deadline": time.time() + 0.6 * timeout}, workdir, timeout)
    return make_row(model, method, s, result, plan, note)


def run_all(args) -> dict:
    from harness.paths import cache_dir

    os.environ.update(OFFLINE)  # the planner in this process reads configs too: never the hub
    start, workdir = time.time(), Path(args.out) / "work"
    reserve = 0 if args.no_pytest else PYTEST_RESERVE_S
    report = {"tiny": args.tiny, "warmup": args.warmup, "device": None, "device_bytes": None, "rows": [],
              "versions": {n: version(n) for n in ("torch", "transformers", "peft", "bitsandbytes")},
              "command": " ".join(sys.argv)}
    for model in args.models.split(","):
        config = model_config(model, args.tiny)
        key = hashlib.sha256((json.dumps(config, sort_keys=True) + "|bench1").encode()).hexdigest()[:12]
        folder = cache_dir() / "bench_gpu" / f"{model}{'-tiny' if args.tiny else ''}-{key}"
        left = args.budget_s - (time.time() - start) - reserve
        built = spawn({"what": "build", "name": f"build-{model}", "folder": str(folder), "config": config,
                       "tiny": args.tiny}, workdir, max(left, 30))
        report["device"] = report["device"] or built.get("device")
        report["device_bytes"] = report["device_bytes"] or built.get("device_bytes")
        report.setdefault("build_s", {})[model] = built.get("build_s")
        for method in args.methods.split(","):
            left = args.budget_s - (time.time() - start) - reserve
            row = one_config(model, method, built, args, left, workdir)
            report["rows"].append(row)
            print(f"[bench_gpu] {model} {method}: {row.get('tokens_per_s') or 0:.0f} tokens/s "
                  f"{row['note']} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    report["pytest"] = None if args.no_pytest else run_pytest(max(60.0, args.budget_s - (time.time() - start)))
    report["wall_s"] = time.time() - start
    return report


def run_pytest(timeout: float) -> dict:
    command = "python " + " ".join(PYTEST)
    try:
        done = subprocess.run([sys.executable, *PYTEST], cwd=ROOT, capture_output=True, text=True,
                              timeout=min(timeout, 240.0))
    except subprocess.TimeoutExpired as exc:  # what had passed by then is in the tail
        return {"command": command, "returncode": None, "tail": _text(exc.stdout)[-4000:],
                "outcome": f"timed out after {min(timeout, 240.0):.0f} s"}
    summary = [line.strip() for line in done.stdout.splitlines()
               if re.search(r"\b(passed|failed|skipped|errors?|no tests ran|deselected)\b", line)]
    return {"command": command, "returncode": done.returncode, "tail": done.stdout[-4000:],
            "outcome": summary[-1] if summary else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def number(value, fmt: str | None = None) -> str:
    """A cell: empty for None; three significant digits below 100, whole numbers above."""
    if value is None or fmt:
        return "" if value is None else format(value, fmt)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def cells(row: dict) -> list[str]:
    gib = [number(row[k] / GIB, ".2f") if row.get(k) is not None else ""
           for k in ("train_peak_bytes", "train_reserved_bytes", "planner_bytes")]
    return [row["model"], row["method"], str(row["seq"]), str(row["batch"]), "yes" if row["ckpt"] else "no",
            number(row.get("steps"), "d"), number(row.get("tokens_per_s")), number(row.get("achieved_tflops")),
            number(row.get("mfu")), *gib, number(row.get("planner_error"), "+.0%"),
            number(row.get("published_gib"), ".1f"), row["note"].replace("|", "/")]


def markdown(report: dict) -> str:
    v, cpu = report["versions"], report["tiny"]
    card = report["device"] or "no device answered"
    size = f" ({report['device_bytes'] / GIB:.1f} GiB)" if report.get("device_bytes") else ""
    lines = [f"**{card}**{size} · torch {v['torch']} · transformers {v['transformers']} · peft {v['peft']} · "
             f"bitsandbytes {v['bitsandbytes']}", "",
             "Random weights from the published config.json, torchtune's single-device settings, bf16 "
             f"autocast, bf16 base; steps: timed steps, after {report['warmup']} warm-up step(s); FLOPs: torch's "
             "counter on one step (with checkpointing the recomputed forward counts); "
             + ("memory: the CPU resident set over the training steps (no reserved memory on a CPU); planner: "
                "its training memory plus the process's resident set before loading"
                if cpu else "memory: torch.cuda.max_memory_allocated / max_memory_reserved over the training "
                "steps, each configuration in its own process") + "; planner error = planner / measured - 1 (as python -m harness.plan --validate).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in report["rows"]]
    lines += ["", "torchtune GiB: its README's peak memory on one RTX 4090 (batch 2 packed to 2048 tokens, "
              "torch.compile, chunked cross-entropy; here the loss is chunked the same way, "
              "trainer.loss_chunk_tokens = batch x sequence / 8)."]
    if report.get("pytest"):
        lines += ["", f"`{report['pytest']['command']}`: {report['pytest']['outcome']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child)
    report = run_all(args)
    text = markdown(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.md").write_text(text)
    (out / "bench_gpu.json").write_text(json.dumps(report, indent=1, default=str))
    print(text)
    failed = [r for r in report["rows"] if r.get("error")]
    return 1 if failed or (report["pytest"] and report["pytest"]["returncode"] != 0) else 0


if __name__ == "__main__":
    sys.exit(main())
