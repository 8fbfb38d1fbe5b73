"""LoRA initializations that need more than the weights: EVA and CorDA read training data first,
LoftQ reads the full-precision weights behind a 4-bit base.

They run through peft's LoRA tuner (``builder: peft``, ``options.init_lora_weights``); peft has
the algorithms, the harness gives them the run's data and model:

- **EVA** (Paischer et al. 2024, arXiv:2410.07170): ``lora_A`` of each layer starts from the
  top right-singular vectors of that layer's inputs on training batches (peft's incremental SVD,
  read until the components converge), and the rank budget (``r`` per layer) is redistributed
  to the layers whose inputs need it most (at most ``rho * r`` each). Run by the "before training"
  hook: parameters are counted after it, so the row holds the ranks EVA chose.
- **CorDA** (Yang et al. 2024, arXiv:2406.05223): each weight is decomposed with the covariance
  of its inputs (``W C = U S V^T``); in the instruction-previewed mode (``ipm``, the default: the
  covariance comes from the task's own data) the top-``r`` components become the adapter and the
  frozen weight keeps the rest, so the model computes the same function when training starts.
  peft's covariance hook reads one sequence per forward pass: the hook feeds ``calibration``
  training examples one at a time (the paper reads 256).
- **LoftQ** (Li et al. 2023, arXiv:2310.08659) on a 4-bit base: the adapter starts as the rank-r
  SVD of the quantization error ``W - Q``, read against the full-precision weights of the model's
  own safetensors file; with ``loftq_iter`` > 1 the base is re-quantized from ``W - s*B*A`` and
  the SVD taken again (the paper's alternating steps). peft's ``replace_lora_weights_loftq`` does
  the one-step version on CUDA only and leaves out LoRA's scale ``s = alpha/r``: here ``s*B*A``,
  the product the forward pass adds, is what approximates ``W - Q``.
"""
from __future__ import annotations

import math
import os
import re
import time

import torch

INITS = ("eva", "corda", "loftq")
ADAPTER = "default"


def split_options(options: dict) -> tuple[str | None, dict, dict]:
    """(the harness-run init or None, the options for peft's LoraConfig, the init's own settings)."""
    from peft.tuners.lora.config import CordaConfig, EvaConfig

    kwargs = dict(options)
    init = kwargs.get("init_lora_weights")
    if init not in INITS:
        return None, kwargs, {}
    own = {"calibration": int(kwargs.pop("calibration", 256)),
           "max_batches": int(kwargs.pop("max_batches", 100))}
    if init == "eva":
        kwargs["eva_config"] = EvaConfig(**kwargs.get("eva_config", {}))
    else:  # peft would run it at build time, without the data or the full-precision weights
        kwargs["init_lora_weights"] = True
        own["corda_config"] = CordaConfig(**kwargs.pop("corda_config", {"corda_method": "ipm"}))
        own["loftq_iter"] = int(kwargs.pop("loftq_config", {}).get("loftq_iter", 1))
    return init, kwargs, own


def lora_layers(model) -> dict:
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules()
            if isinstance(module, LoraLayer) and ADAPTER in module.lora_A}


def ranks(model) -> dict[str, int]:
    return {name.removeprefix("base_model.model."): int(layer.r[ADAPTER])
            for name, layer in lora_layers(model).items()}


def eva(model, kind, batches, max_batches: int, seed: int) -> dict:
    """EVA's SVD over the training examples of ``batches`` (the model inputs as the task type
    gives them; padding, and on causal LMs the prompt tokens when ``use_label_mask``, left out),
    then the new ranks. A layer that sees one vector per sequence (a pooler) needs at least
    ``rho * r`` sequences per batch, so the pass reads batches of at least that many; it fails in
    one line if the SVD has not converged after ``max_batches`` batches (peft would loop on)."""
    from peft import initialize_lora_eva_weights
    from torch.utils.data import DataLoader

    t0 = time.perf_counter()
    rho = model.peft_config[ADAPTER].eva_config.rho
    size = max(batches.batch_size or 1, math.ceil(rho * max(ranks(model).values())))
    loader = DataLoader(batches.dataset, batch_size=size, shuffle=True, collate_fn=batches.collate_fn,
                        generator=torch.Generator().manual_seed(seed))
    read = [0]

    def forward(net, batch):
        read[0] += 1
        if read[0] > max_batches:
            raise RuntimeError(f"EVA's SVD did not converge within {max_batches} batches of {size} "
                               "(raise method.options.max_batches or lower method.options.eva_config.tau)")
        return net(**kind.model_inputs(batch))

    def positions(batch, peft_config):
        inputs = kind.model_inputs(batch)
        ids = inputs.get("input_ids")
        mask = inputs["attention_mask"].bool() if "attention_mask" in inputs else torch.ones_like(ids, dtype=torch.bool)
        labels, eva_cfg = batch.get("labels"), peft_config.eva_config
        if eva_cfg.use_label_mask and torch.is_tensor(labels) and labels.shape == mask.shape:
            mask = mask & (labels != eva_cfg.label_mask_value)
        return mask.reshape(-1, mask.shape[-1]).nonzero()  # multiple choice: one row per pair

    def rows(layer_input, where, name):
        x = layer_input[0] if isinstance(layer_input, (tuple, list)) else layer_input
        if x.dim() == 2:  # one vector per sequence (a pooler): every row
            return x.contiguous()
        return x.reshape(-1, *x.shape[-2:])[where.T.unbind()]

    initialize_lora_eva_weights(model, dataloader=loader, forward_fn=forward,
                                prepare_model_inputs_fn=positions, prepare_layer_inputs_fn=rows,
                                gather_distributed_inputs=False,
                                show_progress_bar=False)
    chosen = ranks(model)
    return {"ranks": chosen, "rank_budget": sum(chosen.values()), "batches": read[0],
            "batch_size": size, "init_s": time.perf_counter() - t0}


def corda(model, kind, batches, corda_config, calibration: int, seed: int, device) -> dict:
    """CorDA's covariance over ``calibration`` training examples (one per forward pass, the base
    model alone), peft's decomposition of every adapted weight, and the adapters set from it.

    The covariance is peft's (each input scaled by its largest value, ``sum X^T X`` over forward
    passes, divided by their number), read by a hook of the harness because peft's assumes inputs
    of shape (1, tokens, features) and a pooler's are (1, features)."""
    from peft import LoraConfig
    from peft.tuners.lora.corda import collect_eigens, crop_corda_eigens

    from harness.device import to_device

    t0 = time.perf_counter()
    layers = lora_layers(model)
    examples = list(batches.dataset)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))
    sample = [examples[int(i)] for i in order[:calibration]]
    bases = {name: layer.get_base_layer() for name, layer in layers.items()}

    @torch.no_grad()
    def accumulate(module, args, output):
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
        x = x / torch.max(x).abs()
        module.covariance_matrix = module.covariance_matrix + x.t() @ x
        module.sample_count += 1

    handles = []
    for name, base in bases.items():
        base.covariance_matrix, base.sample_count = 0, 0
        base.corda_method, base.rank = corda_config.corda_method, int(layers[name].r[ADAPTER])
        handles.append(base.register_forward_hook(accumulate))
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), model.disable_adapter():
            for example in sample:
                model(**kind.model_inputs(to_device(batches.collate_fn([example]), device)))
    finally:
        for handle in handles:
            handle.remove()
    model.train(training)
    for base in bases.values():
        base.covariance_matrix = base.covariance_matrix / base.sample_count
    # peft finds the layers to decompose by name: the adapted layers' base layers, exactly
    pattern = "|".join(re.escape(name) + r"\.base_layer" for name in layers)
    config = LoraConfig(target_modules=pattern, init_lora_weights="corda", corda_config=corda_config)
    collect_eigens(model, config, verbose=False)
    crop_corda_eigens(model, config)
    for name, layer in layers.items():
        for field in ("covariance_matrix", "sample_count", "corda_method", "rank"):
            delattr(bases[name], field)
        layer.corda_init(ADAPTER, "corda")
    return {"mode": corda_config.corda_method, "calibration_examples": len(sample),
            "init_s": time.perf_counter() - t0}


def weights_folder(model) -> str:
    """The folder of the safetensors the base model was loaded from (a local folder, or the hub
    cache's snapshot of a hub id)."""
    source = model.get_base_model().config._name_or_path
    if os.path.isdir(source):
        return source
    from huggingface_hub import snapshot_download

    return snapshot_download(source, local_files_only=True)


@torch.no_grad()
def loftq(model, iterations: int) -> dict:
    """LoftQ on every 4-bit LoRA layer; the error ``||W - Q - s*B*A||_F / ||W||_F`` before (B = 0)
    and after, averaged over the layers."""
    import bitsandbytes as bnb
    from peft.tuners.lora.bnb import Linear4bit
    from peft.utils.loftq_utils import _SafetensorLoader

    t0 = time.perf_counter()
    loader = _SafetensorLoader(model, weights_folder(model))
    before, after = [], []
    for name, layer in model.named_modules():
        if not isinstance(layer, Linear4bit):
            continue
        param = layer.get_base_layer().weight
        state = param.quant_state
        w = loader.get_tensor(name.removeprefix("base_model.model.") + ".weight")
        w = w.to(device=param.device, dtype=state.dtype)
        full = w.float()
        r, scale = int(layer.r[ADAPTER]), float(layer.scaling[ADAPTER])
        target = w
        for _ in range(iterations):  # Q = q(W - s*B*A), then s*B*A = the rank-r SVD of W - Q
            packed, state = bnb.functional.quantize_4bit(
                target, blocksize=state.blocksize, compress_statistics=param.compress_statistics,
                quant_type=param.quant_type, quant_storage=param.quant_storage)
            error = full - bnb.functional.dequantize_4bit(packed, state).float()
            u, s, vh = torch.linalg.svd(error, full_matrices=False)
            root = (s[:r] / scale).sqrt()
            lora_b, lora_a = u[:, :r] * root, root[:, None] * vh[:r]
            target = (full - scale * lora_b @ lora_a).to(w.dtype)
        param.data, param.quant_state = packed, state
        a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        a.data = lora_a.to(a.dtype).contiguous()
        b.data = lora_b.to(b.dtype).contiguous()
        before.append(float(error.norm() / full.norm()))
        after.append(float((error - scale * lora_b @ lora_a).norm() / full.norm()))
    if not after:
        raise ValueError("LoftQ found no 4-bit LoRA layer: it needs a 4-bit base (quant=nf4)")
    return {"iterations": iterations, "layers": len(after),
            "relative_error_quantized": math.fsum(before) / len(before),
            "relative_error_with_adapter": math.fsum(after) / len(after),
            "init_s": time.perf_counter() - t0}
