"""How far the planner's predictions are from measured peaks: the store's runs, and published
measurements of LoRA and QLoRA on large models (the anchors).

For a run in the store, its own resolved config is planned and compared with what it measured
while training (``peak_memory_train_bytes``, else the run's peak): on CUDA, PyTorch's allocated
peak, which the estimate targets without a runtime; on CPU, the resident set, for which the
estimate is added to the resident set the run measured before loading its model
(``baseline_cpu_rss_bytes``), so both sides hold the same runtime. Error = predicted / measured
- 1, per run; the table gives its median and range per method, model and memory kind.

The anchors are planned from the model's published shape (``harness/plan/anchors/*.json``,
config only) with the settings their sources state; where a source leaves a setting out, the
anchor says what was assumed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.plan import GIB, estimate

ANCHORS_DIR = Path(__file__).parent / "anchors"


@dataclass
class Anchor:
    name: str
    measured_gib: float  # as published (GB converted to GiB where the source gives GB)
    what: str  # the measurement as its source names it
    overrides: list[str]
    source: str
    assumed: str = ""
    bound: bool = False  # the source states an upper bound ("fits in"), not a measured peak


def _common(model: str) -> list[str]:
    """A Llama-family causal LM read from its published config, bf16 weights, on a CUDA GPU."""
    return ["model=llama", f"model.source={ANCHORS_DIR / model}", f"model.name={model}",
            "task=rotten_tomatoes_prompt", "trainer.device=cuda", "trainer.autocast=bf16",
            "model.dtype=bfloat16"]


ANCHORS = [
    Anchor("torchtune Llama-3.1-8B LoRA (1x RTX 4090)", 16.2, "peak memory, GiB",
           [*_common("llama-3.1-8b"), "method=lora", "method.r=8", "method.alpha=16", "method.dropout=0",
            "method.target_modules=[q_proj,v_proj]", "trainer.batch_size=2", "task.max_length=2048",
            "trainer.gradient_checkpointing=true"],
           "pytorch/torchtune README, 'Memory and training speed' (batch 2, packed to 2048, compile on); "
           "recipes/configs/llama3_1/8B_lora_single_device.yaml",
           "activation checkpointing on, as the recipe's config; whether allocated or reserved is not stated; "
           "torchtune's chunked cross-entropy never holds the full fp32 logits; the planner counts them"),
    Anchor("torchtune Llama-3.1-8B QLoRA (1x RTX 4090)", 7.4, "peak memory, GiB",
           [*_common("llama-3.1-8b"), "method=qlora", "method.r=8", "method.alpha=16", "method.dropout=0",
            "method.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
            "trainer.batch_size=2", "task.max_length=2048", "trainer.gradient_checkpointing=true"],
           "pytorch/torchtune README; recipes/configs/llama3_1/8B_qlora_single_device.yaml",
           "activation checkpointing on, as the recipe's config; torchtune quantizes with torchao NF4 and "
           "computes the loss in chunks (no full fp32 logits); the planner counts them"),
    Anchor("litgpt Llama-2-7B LoRA (1x A10G)", 19.77e9 / GIB, "torch.cuda.max_memory_allocated, 19.77 GB",
           [*_common("llama-2-7b"), "method=lora", "method.r=32", "method.alpha=16", "method.dropout=0.05",
            "method.target_modules=[q_proj,v_proj]", "trainer.batch_size=2", "task.max_length=512"],
           "Lightning-AI/litgpt config_hub/finetune/README.md (llama-2-7b/lora.yaml: micro batch 2, "
           "max length 512, bf16-true)", "batches padded to 512 (litgpt pads to the longest in the batch)"),
    Anchor("litgpt Llama-2-7B QLoRA (1x A10G)", 13.68e9 / GIB, "torch.cuda.max_memory_allocated, 13.68 GB",
           [*_common("llama-2-7b"), "method=qlora", "method.r=32", "method.alpha=16", "method.dropout=0.05",
            "method.target_modules=[q_proj,v_proj]", "trainer.batch_size=2", "task.max_length=512",
            "quant.double_quant=false", "trainer.optimizer=paged_adamw_32bit"],
           "Lightning-AI/litgpt config_hub/finetune/README.md (llama-2-7b/qlora.yaml: bnb.nf4, paged AdamW)",
           "batches padded to 512; litgpt also quantizes the output layer, the planner keeps it in bf16"),
    Anchor("QLoRA paper: LLaMA-65B fits one 48 GB GPU", 48.0, "fits a 48 GB card (48 GiB: A6000, A40)",
           [*_common("llama-65b"), "method=qlora", "method.r=64", "method.alpha=16", "method.dropout=0.05",
            "method.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
            "trainer.batch_size=1", "task.max_length=512", "trainer.gradient_checkpointing=true",
            "trainer.optimizer=paged_adamw_32bit"],
           "artidoro/qlora scripts/finetune_guanaco_65b.sh (batch 1, all linear layers, r 64, nf4 + double "
           "quant, gradient checkpointing, paged AdamW 32-bit); Dettmers et al. 2023",
           "sequence of 512 tokens (target_max_len 512)", bound=True),
]


def _config(overrides: list[str]):
    from harness.plan.compose import configs

    return configs(overrides)[0]


def validate_against_anchors():
    import pandas as pd

    rows = []
    for a in ANCHORS:
        est = estimate(_config(a.overrides))
        rows.append({"anchor": a.name, "published_GiB": round(a.measured_gib, 2),
                     "predicted_GiB": round(est.total / GIB, 2), "paged_GiB": round(est.paged / GIB, 2),
                     "error": (("fits" if est.total / GIB <= a.measured_gib else "does not fit") if a.bound
                               else f"{est.total / GIB / a.measured_gib - 1:+.0%}"),
                     "published as": a.what, "assumed": a.assumed})
    return pd.DataFrame(rows)


def validate_against_store(store: str):
    """Per method, model and memory kind: runs, median and range of the prediction error."""
    import pandas as pd

    from harness.config import DeviceKind
    from harness.results import load
    from harness.job.validation import from_container

    runs = load(store, status="finished", decode=False)
    rows, cache, skipped = [], {}, 0
    for r in runs.to_dict("records"):
        measured = r.get("peak_memory_train_bytes") or r.get("peak_memory_bytes")
        if not measured or pd.isna(measured):
            continue
        key = r["config_hash"]
        if key not in cache:
            try:
                cfg = from_container(json.loads(r["config_json"]))
                if r.get("device_kind") in ("cpu", "cuda"):  # planned for the device it ran on
                    cfg.trainer.device = DeviceKind(r["device_kind"])
                cache[key] = estimate(cfg)
            except Exception as exc:  # noqa: BLE001 - a run this harness can no longer plan
                cache[key] = exc
        est = cache[key]
        if isinstance(est, Exception):
            skipped += 1
            continue
        cpu = r.get("memory_kind") == "cpu_rss"
        predicted = est.training + (float(r.get("baseline_cpu_rss_bytes") or 0) if cpu else 0.0)
        rows.append({"method": r["method"], "model": r["model"], "memory": r.get("memory_kind"),
                     "measured_GiB": float(measured) / GIB, "predicted_GiB": predicted / GIB,
                     "error": predicted / float(measured) - 1})
    if not rows:
        return pd.DataFrame(columns=["method", "model", "memory", "runs", "median error", "range"])
    df = pd.DataFrame(rows)
    out = df.groupby(["method", "model", "memory"]).agg(
        runs=("error", "size"), measured_GiB=("measured_GiB", "median"), predicted_GiB=("predicted_GiB", "median"),
        median_error=("error", "median"), low=("error", "min"), high=("error", "max")).reset_index()
    for c in ("measured_GiB", "predicted_GiB"):
        out[c] = out[c].round(3)
    out["median error"] = out.pop("median_error").map(lambda v: f"{v:+.0%}")
    out["range"] = [f"{lo:+.0%} .. {hi:+.0%}" for lo, hi in zip(out.pop("low"), out.pop("high"))]
    out.attrs["skipped"] = skipped  # finished runs whose config this harness cannot plan
    return out
