"""EVA, CorDA and LoftQ (harness/methods/lora_inits.py) through the runner's own setup: what
each initialization computes is checked against the data or weights it reads, independently of
peft's code."""
from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import torch

from harness.run import pipeline
from tests.conftest import TINY
from tests.method_helpers import CPU, base_model, build_config, build_from, head_size, train_steps

FAST_EVA = "method.options.eva_config.tau=0.9"  # converges in a few batches of the tiny data


def _lora_layers(model) -> dict:
    return {n.removeprefix("base_model.model."): m for n, m in model.named_modules()
            if hasattr(m, "lora_A") and hasattr(m, "base_layer")}


def _layer_inputs(model, kind, batches, layers) -> dict[str, torch.Tensor]:
    """Every real (unpadded) token's input to each layer's frozen weight (``layers``: adapted
    layers, read with the adapters off, or a plain model's linear layers)."""
    rows: dict[str, list] = {n: [] for n in layers}
    mask: list[torch.Tensor] = []

    def hook(name):
        def record(module, args, output):
            x = args[0].detach()
            rows[name].append(x[mask[0]] if x.dim() == 3 else x)
        return record

    handles = [getattr(m, "base_layer", m).register_forward_hook(hook(n)) for n, m in layers.items()]
    model.eval()
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with torch.no_grad(), off:
        for batch in batches:
            inputs = kind.model_inputs(batch)
            mask[:] = [inputs["attention_mask"].bool()]
            model(**inputs)
    for h in handles:
        h.remove()
    return {n: torch.cat(r).float() for n, r in rows.items()}


def test_eva_starts_each_adapter_from_its_inputs_principal_directions_and_keeps_the_rank_budget(store_path):
    cfg = build_config(store_path, "method=eva", "model=tiny_llama", FAST_EVA)
    s = pipeline.setup(cfg, CPU)  # the runner's setup: EVA runs in the "before training" hook
    layers = _lora_layers(s.adapted.model)
    facts = s.adapted.details()["eva"]
    ranks = {n: m.lora_A["default"].weight.shape[0] for n, m in layers.items()}
    assert facts["ranks"] == ranks
    assert sum(ranks.values()) == cfg.method.r * len(ranks)  # LoRA's budget, redistributed
    assert len(set(ranks.values())) > 1 and max(ranks.values()) <= 2 * cfg.method.r  # rho = 2
    inputs = _layer_inputs(s.adapted.model, s.kind, s.batches["train"], layers)
    for name, layer in layers.items():
        a = layer.lora_A["default"].weight.detach()
        r = a.shape[0]
        x = inputs[name] - inputs[name].mean(0)
        top = torch.linalg.svd(x, full_matrices=False)[2][:r]
        # the leading direction, and the subspace (a random r-subspace would share about r/64
        # of it; the trailing directions are only as close as tau=0.9 lets them converge)
        assert abs(float(a[0] @ top[0])) > 0.95, name
        assert float((a @ top.T).pow(2).sum() / r) > 0.8, name
        assert torch.allclose(a @ a.T, torch.eye(r), atol=1e-4)
        assert not layer.lora_B["default"].weight.any()  # the model starts as the base
        # alpha follows the new rank (adjust_scaling_factors), so every layer keeps LoRA's scale
        assert layer.scaling["default"] == pytest.approx(cfg.method.alpha / cfg.method.r)
    shapes = {n: (m.in_features, m.out_features) for n, m in layers.items()}
    count = sum(r * sum(shapes[n]) for n, r in ranks.items()) + head_size(cfg)
    assert s.trainable == count  # the stored count is the ranks EVA chose


def test_eva_that_does_not_converge_fails_in_one_line_instead_of_looping(store_path):
    cfg = build_config(store_path, "method=eva", "method.options.max_batches=2")
    adapted = build_from(cfg, base_model(cfg))
    with pytest.raises(RuntimeError, match="did not converge within 2 batches"):
        train_steps(adapted, 1)


def test_corda_decomposes_each_weight_with_its_input_covariance_and_keeps_the_function(store_path):
    cfg = build_config(store_path, "method=corda", "model=tiny_llama")
    original = {n: m.weight.detach().clone() for n, m in base_model(cfg).named_modules()
                if isinstance(m, torch.nn.Linear)}
    s = pipeline.setup(cfg, CPU)
    model, kind = s.adapted.model, s.kind
    layers = _lora_layers(model)
    batch = next(iter(s.batches["validation"]))
    examples = list(s.batches["train"].dataset)
    assert s.adapted.details()["corda"]["calibration_examples"] == min(256, len(examples))
    # the covariance of each layer's inputs in the original model, one example per forward pass
    plain = base_model(cfg)
    plain_layers = {n: plain.get_submodule(n) for n in layers}
    covariance = {n: 0 for n in layers}
    for example in examples:
        one = s.batches["train"].collate_fn([example])
        for name, x in _layer_inputs(plain, kind, [one], plain_layers).items():
            x = x / x.max().abs()
            covariance[name] = covariance[name] + x.T @ x
    model.eval()
    with torch.no_grad():
        logits = model(**kind.model_inputs(batch)).logits
        with model.disable_adapter():
            residual_logits = model(**kind.model_inputs(batch)).logits
    base = base_model(cfg).eval()
    with torch.no_grad():
        assert torch.allclose(logits, base(**kind.model_inputs(batch)).logits, atol=1e-4)
    assert not torch.allclose(logits, residual_logits, atol=1e-3)  # the adapter carries a real part
    for name, layer in layers.items():
        w0, r = original[name], cfg.method.r
        delta = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        assert torch.allclose(layer.base_layer.weight + delta, w0, atol=1e-4)  # W = residual + s·B·A
        c = covariance[name] / len(examples)
        c = c + torch.eye(len(c)) * c.diagonal().mean() * 0.01  # the paper's damping
        assert torch.dist(c @ torch.linalg.inv(c), torch.eye(len(c))) < 0.05
        u, sv, vh = torch.linalg.svd(w0 @ c, full_matrices=False)
        # s·B·A·C is the top-r part of W·C (ipm: the components the task's inputs use most)
        assert torch.allclose(delta.detach() @ c, u[:, :r] * sv[:r] @ vh[:r], atol=1e-3 * sv[0]), name


def _nf4(layer):
    import bitsandbytes as bnb

    return bnb.functional.dequantize_4bit(layer.base_layer.weight.data, layer.base_layer.weight.quant_state).float()


@pytest.mark.parametrize("iterations", [1, 3])
def test_loftq_starts_the_adapter_from_the_quantization_error_on_a_base_that_stays_4bit(store_path, iterations):
    cfg = build_config(store_path, "method=loftq", f"method.options.loftq_config.loftq_iter={iterations}")
    full = {n: m.weight.detach().clone() for n, m in
            base_model(build_config(store_path, "method=lora")).named_modules() if isinstance(m, torch.nn.Linear)}
    qlora = _lora_layers(build_from(q := build_config(store_path, "method=qlora"), base_model(q)).model)
    adapted = build_from(cfg, base_model(cfg))
    layers = _lora_layers(adapted.model)
    facts = adapted.details()["loftq"]
    assert facts["layers"] == len(layers) and facts["iterations"] == iterations
    assert facts["relative_error_with_adapter"] < facts["relative_error_quantized"]
    for name, layer in layers.items():
        packed = layer.base_layer.weight
        assert packed.dtype == torch.uint8 and not packed.requires_grad  # still 4-bit, frozen
        same_base = torch.equal(packed, qlora[name].base_layer.weight)
        assert same_base == (iterations == 1)  # more steps re-quantize the base from W - s·B·A
        w, q = full[name], _nf4(layer)
        delta = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        u, sv, vh = torch.linalg.svd(w - q, full_matrices=False)
        r = cfg.method.r
        assert torch.allclose(delta.detach(), u[:, :r] * sv[:r] @ vh[:r], atol=1e-4)  # s·B·A, not B·A
        assert torch.dist(w, q + delta) < torch.dist(w, q)
    before = {n: m.base_layer.weight.detach().clone() for n, m in layers.items()}
    train_steps(adapted, 1)
    assert all(torch.equal(before[n], m.base_layer.weight) for n, m in layers.items())


@pytest.mark.parametrize("args,words", [
    (["method=loftq", "quant=none"], "quant"),
    (["method=corda", "quant=nf4"], "quant"),
])
def test_inits_are_refused_where_they_cannot_run(tmp_path, args, words):
    done = subprocess.run([sys.executable, "-m", "harness", *TINY, *args, f"store.url={tmp_path / 'r.db'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert words in done.stderr and args[0].removeprefix("method=") in done.stderr
