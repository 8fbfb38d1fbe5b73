"""Training memory of LoRA and LoRA-FA, measured side by side in one run.

    python -m experiments.lorafa_memory                       # minilm, batch 32 x 128 tokens
    python -m experiments.lorafa_memory model=tiny_bert --batch 8 --length 32

For each method it runs two optimizer steps on the same random batch (the first creates the
optimizer state) and measures, on the second step:

* activations: bytes of the tensors autograd keeps for the backward pass (each storage once,
  parameters excluded), the part LoRA-FA shrinks by not needing A's input;
* gradients: bytes of parameter gradients after backward;
* optimizer state: bytes of the optimizer's state tensors (Adam's two moments per trained element);
* on CUDA, the allocator's peak over the step.

Any further arguments are config overrides, as on the harness command line.
"""
from __future__ import annotations

import argparse
import os

import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from harness.job.validation import register_schemas, validate
from harness.methods import METHODS, MethodContext, TrainingStart, builder_name
from harness.models.load import load_model
from harness.paths import conf_dir
from harness.tasks.multitask import task_names
from harness.tasks.types import TASK_TYPES
from harness.training.loop import training_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MiB = 2 ** 20


def config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def context(cfg, device: torch.device) -> MethodContext:
    """What the runner tells a method about the run (see harness.run.pipeline.setup)."""
    return MethodContext(
        target_modules=list(cfg.method.target_modules or cfg.model.target_modules),
        head_modules=list(cfg.model.head_modules), four_bit=bool(cfg.quant.load_in_4bit),
        task_type=TASK_TYPES.get(cfg.task.task_type)(), task_names=task_names(cfg.task),
        device=device, seed=int(cfg.seed), gradient_checkpointing=cfg.trainer.gradient_checkpointing,
        max_grad_norm=cfg.trainer.max_grad_norm)


def measure(cfg, batch: dict, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = load_model(cfg.model, cfg.quant, 2, device).model
    ctx = context(cfg, device)
    adapted = METHODS.get(builder_name(cfg.method)).build(model, cfg.method, ctx)
    adapted.before_training(TrainingStart(2, DataLoader([batch], batch_size=None), device))
    optimizer = adapted.make_optimizer()
    params = {storage_key(p) for p in adapted.model.parameters()}
    adapted.model.train()
    for step in (1, 2):
        saved: dict[tuple[int, int], int] = {}

        def pack(t: torch.Tensor):
            key = storage_key(t)
            if key not in params:
                saved[key] = key[1]
            return t

        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = training_loss(adapted, ctx.task_type, batch)
        loss.backward()
        grads = sum(p.grad.nbytes for p in adapted.model.parameters() if p.grad is not None)
        optimizer.step()
        adapted.after_optimizer_step(step, 2)
        optimizer.zero_grad(set_to_none=True)
    state = sum(v.nbytes for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    out = {"trainable": adapted.count_parameters()[0], "activations": sum(saved.values()),
           "gradients": grads, "optimizer_state": state}
    out["total"] = out["activations"] + out["gradients"] + out["optimizer_state"]
    if device.type == "cuda":
        out["cuda_peak"] = torch.cuda.max_memory_allocated(device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args, overrides = parser.parse_known_args()
    register_schemas()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 2000, (args.batch, args.length), generator=g),
             "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long),
             "labels": torch.randint(0, 2, (args.batch,), generator=g)}
    if any(o.startswith("model=tiny") for o in overrides):
        batch["input_ids"] %= 40
    batch = {k: v.to(device) for k, v in batch.items()}
    results = {m: measure(config([f"method={m}", *overrides]), batch, device) for m in ("lora", "lorafa")}
    keys = ["trainable", "activations", "gradients", "optimizer_state", "total"]
    keys += ["cuda_peak"] if device.type == "cuda" else []
    print(f"device {device}, batch {args.batch} x {args.length} tokens, overrides {overrides or 'none'}")
    print(f"{'':16s}{'lora':>14s}{'lorafa':>14s}{'lorafa/lora':>14s}")
    for k in keys:
        a, b = results["lora"][k], results["lorafa"][k]
        fmt = (lambda v: f"{v:14,d}") if k == "trainable" else (lambda v: f"{v / MiB:10.2f} MiB")
        print(f"{k:16s}{fmt(a)}{fmt(b)}{b / a if a else float('nan'):14.3f}")


if __name__ == "__main__":
    main()
