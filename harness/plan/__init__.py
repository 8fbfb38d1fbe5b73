"""Predict a run's peak training memory from its config, before renting anything.

The model is read from its config only (``AutoConfig``; a hub id, a local folder, a harness
model config) and built on PyTorch's ``meta`` device, which allocates no storage; the run's
method is then applied to it through the method registry, as a run would, so the trainable and
added parameters are the method's own, counted exactly. Memory is the sum of:

- **weights**: the base's parameters in ``model.dtype``; with a 4-bit base, the linear layers
  at 4 bits plus bitsandbytes' block constants (one per 64 weights: fp32, or 8-bit plus a
  second level with double quantization), the rest (embeddings, norms, the head) unquantized;
- **adapters**: what the method adds (fp32), trainable or not (LoRA-FA's frozen A, VeRA's shared
  matrices);
- **gradients**: one per trainable element, in its parameter's dtype;
- **optimizer**: AdamW's two states per trainable element (fp32), or one byte each for the 8-bit
  optimizers on tensors of at least 4,096 elements (bitsandbytes keeps smaller ones in 32 bits);
  paged optimizers' states live in CUDA unified memory, outside PyTorch's allocator, and are
  shown apart (``paged``);
- **activations**: what the forward pass keeps for the backward pass, found by running the
  adapted model on the meta device at the planned batch and sequence length and summing the
  tensors autograd saves (:func:`saved_for_backward`: exact for the model's code and the method's
  layers, dropout copies included), in bf16 under autocast; with gradient checkpointing each
  layer's input plus one layer recomputed; for a causal LM, the loss's logits over the vocabulary
  (with their fp32 copy and gradient).

On CPU the measured peak is the process's resident set, which also holds the Python runtime and
its libraries: the estimate's ``runtime`` is this process's own resident set after the same
imports, measured, not assumed. On CUDA the measured peak is PyTorch's allocated peak, which
holds no runtime. ``python -m harness.plan --validate`` compares estimates with the store's
measured peaks and with published measurements (:mod:`harness.plan.check`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024 ** 3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
COMPONENTS = ("weights", "adapters", "gradients", "optimizer", "activations", "runtime")


@dataclass
class Estimate:
    weights: float = 0.0
    adapters: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    runtime: float = 0.0
    paged: float = 0.0  # paged optimizer states (CUDA unified memory, outside the allocator)
    trainable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        """The predicted peak in bytes, as the run measures it (paged states left out)."""
        return sum(getattr(self, c) for c in COMPONENTS)

    @property
    def training(self) -> float:
        """The same without the runtime: what a run adds to a process that has imported torch."""
        return self.total - self.runtime


def base_meta_model(cfg):
    """The run's base model built on the meta device from its config alone: (config, task type,
    model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from harness.models.load import build_tiny, gguf_to_safetensors
    from harness.plan.inputs import building, read_config
    from harness.models.sources import resolve_source
    from harness.tasks.types import task_type

    source = build_tiny(cfg.model.tiny) if cfg.model.tiny else cfg.model.source
    if source.startswith("package:"):
        source = resolve_source(source)
    if source.endswith(".gguf"):
        source = gguf_to_safetensors(source)
    revision = {"revision": cfg.model.revision} if cfg.model.revision else {}
    remote = cfg.model.trust_remote_code
    config = read_config(cfg, source, trust_remote_code=remote, **revision)  # one line if it cannot
    kind = task_type(cfg.task.task_type).for_task(cfg.task)
    with torch.device("meta"), building(cfg):
        if kind.causal_lm:
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote)
        else:
            config.num_labels = max(2, len(cfg.task.labels or []))
            model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=remote)
    return config, kind, model


def meta_model(cfg):
    """The run's model on the meta device with its method applied, through the method registry
    as a run applies it: (config, task type, base parameters, linear weights, adapted)."""
    import torch

    from harness.run.pipeline import build_method, method_context

    config, kind, model = base_meta_model(cfg)
    base = {n: (p.numel(), p.dtype) for n, p in model.named_parameters()}
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    ctx = method_context(cfg, kind, torch.device("meta"))
    ctx.four_bit = False  # counted by estimate(): a meta model has no 4-bit layers to find
    return config, kind, base, linear, build_method(cfg, model, ctx)


def fused_attention(config, device: str) -> bool:
    """Whether the run's attention keeps no (sequence x sequence) scores for its backward pass:
    SDPA or flash attention on a GPU (its fused kernels keep only a row statistic), or on a CPU
    without attention dropout (PyTorch's CPU flash kernel; with dropout it falls back to the math
    path, which keeps the probabilities). Eager attention always keeps them."""
    impl = getattr(config, "_attn_implementation", None) or "eager"
    dropout = float(getattr(config, "attention_probs_dropout_prob", 0) or getattr(config, "attention_dropout", 0) or 0)
    return impl != "eager" and (device == "cuda" or dropout == 0)


def saved_for_backward(model, batch: int, seq: int, causal_lm: bool,
                       fused: bool = False) -> tuple[float, float, float]:
    """What one training forward pass keeps for the backward pass, found by running the model
    on the meta device (shapes only, nothing allocated) under ``saved_tensors_hooks``: the bytes
    of floating activations in their own dtype, their element count, and the elements of the
    base weights a layer saves (a frozen linear layer keeps its weight to pass gradients back;
    under bf16 autocast that is a bf16 copy). Views of one tensor count once. No attention mask
    is passed (no padding), and a causal LM's logits are computed for one position here (the
    loss's logits are added by :func:`estimate`). On the meta device attention runs PyTorch's
    math path, which keeps the (sequence x sequence) scores; with ``fused`` attention
    (:func:`fused_attention`) those are left out and the kernel's log-sum-exp row kept instead."""
    import torch

    import weakref

    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, tuple[int, int]] = {}
    holders: dict[int, int] = {}  # live saved tensors per storage: a graph thrown away mid-pass
    weights: dict[int, int] = {}  # (DoRA's detached weight norm) frees what it saved

    def release(key: int) -> None:
        holders[key] -= 1
        if not holders[key]:
            del holders[key], saved[key]

    def keep(t):
        key = t.untyped_storage()._cdata
        if key in params:
            weights[key] = t.numel()
            return t
        if fused and t.dim() >= 3 and tuple(t.shape[-2:]) == (seq, seq):
            size = (t.numel() // seq, 4)  # fp32 log-sum-exp per query row
        elif t.is_floating_point():
            size = (t.numel(), t.element_size())
        else:
            return t
        saved[key] = max(saved.get(key, size), size)
        holders[key] = holders.get(key, 0) + 1
        weakref.finalize(t, release, key)
        return t

    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    extra = {"logits_to_keep": 1} if causal_lm else {}
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        out = model(input_ids=ids, **extra)  # held: its graph keeps what backward will need
        kept = (float(sum(n * e for n, e in saved.values())), float(sum(n for n, _ in saved.values())),
                float(sum(weights.values())))
    del out
    return kept


def estimate(cfg, runtime: float = 0.0) -> Estimate:
    """The predicted peak training memory of the run ``cfg`` (a validated RunConfig)."""
    config, kind, base, linear, adapted = meta_model(cfg)
    model_bytes = DTYPE_BYTES[cfg.model.dtype.value]
    four_bit = bool(cfg.quant.load_in_4bit)
    skip = set(cfg.model.quant_skip_modules) | ({"lm_head"} if kind.causal_lm else set())
    est = Estimate(runtime=runtime)
    device, bf16 = _device(cfg), _bf16(cfg)
    paged = cfg.trainer.optimizer.value.startswith("paged") and device == "cuda"
    block = 1 / 64 * (1 + 4 / 256) if getattr(cfg.quant, "double_quant", False) else 4 / 64
    for name, (n, _) in base.items():
        quantized = four_bit and name in linear and not any(s in name.split(".") for s in skip)
        est.weights += n * (0.5 + block) if quantized else n * model_bytes
    eight_bit = cfg.trainer.optimizer.value in ("adamw_8bit", "paged_adamw_8bit")
    for name, p in adapted.model.named_parameters():
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        added = plain not in base
        if added:
            est.adapters += p.numel() * 4
        if not p.requires_grad:
            continue
        est.trainable += p.numel()
        est.gradients += p.numel() * (4 if added else model_bytes)
        states = p.numel() * (2 if eight_bit and p.numel() >= 4096 else 8)
        if paged:
            est.paged += states
        else:
            est.optimizer += states
    batch, seq = cfg.trainer.batch_size, cfg.task.max_length
    fused = fused_attention(config, device)
    try:
        nbytes, elements, weight_copies = saved_for_backward(adapted.model, batch, seq, kind.causal_lm, fused)
    except (NotImplementedError, RuntimeError) as exc:  # an op without a meta kernel
        est.notes.append(f"activations of the base model: the method's forward cannot run on the meta "
                         f"device ({str(exc).splitlines()[0][:80]})")
        base_model = base_meta_model(cfg)[2]
        nbytes, elements, weight_copies = saved_for_backward(base_model, batch, seq, kind.causal_lm, fused)
    if bf16:  # autocast keeps bf16 copies: of activations, and of fp32 weights it multiplies
        nbytes = elements * 2 + (weight_copies * 2 if model_bytes == 4 else 0)
    act_bytes = 2 if bf16 else model_bytes
    layers = config.num_hidden_layers
    if cfg.trainer.gradient_checkpointing:  # each layer's input, and one layer recomputed
        est.activations = layers * batch * seq * config.hidden_size * act_bytes + nbytes / layers
    else:
        est.activations = nbytes
    if kind.causal_lm:  # the loss's logits over the vocabulary, their fp32 copy and gradient:
        positions = batch * seq  # of every position, or of one chunk (trainer.loss_chunk_tokens)
        held = min(cfg.trainer.loss_chunk_tokens or positions, positions)
        est.activations += held * config.vocab_size * (act_bytes + 8)
    return est


def _device(cfg) -> str:
    from harness.device import device_kind

    return device_kind(cfg.trainer.device.value)


def _bf16(cfg) -> bool:
    """Whether the run's forward passes run in bf16, as the run decides it (``wants_bf16``); a
    CUDA run with autocast=auto is planned for a GPU with native bf16 (Ampere or newer)."""
    import torch

    from harness.device import wants_bf16

    if _device(cfg) == "cuda" and cfg.trainer.autocast.value == "auto":
        return True
    return wants_bf16(cfg, torch.device("cpu"))


def runtime_rss() -> float:
    """This process's resident set (bytes) once torch, transformers, peft and the methods are
    imported, as a run's worker has them before its model loads (:mod:`harness.job.warm`)."""
    import psutil

    from harness.job.warm import preload

    preload()  # the imports a run's worker makes first

    return float(psutil.Process().memory_info().rss)
