"""Trainable counts of the rest of the peft catalogue against each method's formula (the first
half is in test_methods_catalogue.py): the count the run stores (``count_parameters()[0]``) must
be what the method's parameterization, as peft implements it, gives over the adapted layers of the
tiny model (read off a fresh base model: names, shapes, bias) plus the classification head. Each
formula is written from the method's tensors (ranks, factor sizes, blocks, shared parts), never by
summing the adapted model's parameters. Where peft's count differs from the paper's, the formula is
peft's and the comment says what differs."""
from __future__ import annotations

import math

import pytest
import torch

from tests.method_helpers import base_model, build_config, build_from, head_size, target_shapes


def _targets(cfg) -> list[tuple[str, int, int, bool]]:
    """(name, in, out, has bias) of every Linear the method adapts, in the model's order."""
    targets = set(cfg.method.target_modules or cfg.model.target_modules)
    return [(name, m.in_features, m.out_features, m.bias is not None)
            for name, m in base_model(cfg).named_modules()
            if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets]


def _lokr(m, o, i, out) -> int:
    """LoKr: ΔW = W1 ⊗ W2 with out = a·b and in = c·d split by peft's ``factorization`` (LyCORIS'
    rule: the pair nearest the square root, a <= b, c <= d). W1 (a x c) is a full matrix; W2
    (b x d) is full when r >= max(b, d)/2 and low rank, W2a (b x r) · W2b (r x d), otherwise
    (the same rule for W1 with decompose_both)."""
    from peft.tuners.lokr.layer import factorization

    factor = o.get("decompose_factor", -1)
    (a, b), (c, d) = factorization(out, factor), factorization(i, factor)
    w1 = m.r * (a + c) if o.get("decompose_both", False) and m.r < max(a, c) / 2 else a * c
    w2 = m.r * (b + d) if m.r < max(b, d) / 2 else b * d
    return w1 + w2


def _lily(m, o, targets) -> int:
    """Lily: per adapted layer its own router (r -> num_B logits); the down-projections A (in x r)
    are shared by each run of stride_A consecutive layers, and the num_B up-projection experts
    (r x out each) by all the layers of the same target name and shape (peft groups by
    (target suffix, weight shape): here query, key, value, and each shape of dense)."""
    groups: dict[tuple[str, int, int], int] = {}
    for name, i, out, _ in targets:
        key = (name.split(".")[-1], i, out)
        groups[key] = groups.get(key, 0) + 1
    total = 0
    for (_, i, out), n in groups.items():
        total += math.ceil(n / o["stride_A"]) * i * m.r  # distinct A's of the group
        total += o["num_B"] * m.r * out  # the group's B experts
        total += n * m.r * o["num_B"]  # one router per layer
    return total


def _frod(o, i) -> int:
    """FRoD: W = U (Λ + S) V^T with U, V frozen from a joint decomposition of the layers of one
    category (V is in x in): trainable are the diagonal Λ (in values) and the values of the sparse
    S at floor(sparse_rate · in²) fixed off-diagonal positions (at most in·(in-1), at least one)."""
    rate = o.get("sparse_rate", 0.01)
    nnz = min(int(i * i * rate), i * (i - 1))
    if rate > 0 and i > 1:
        nnz = max(1, nnz)
    return i + nnz


def _adamss(m, o, i, out, bias) -> int:
    """AdaMSS: the weight, with its bias as an extra input column, is decomposed by an SVD of
    rank r' = min(r, out, in + bias); its out rows are clustered by k-means into K = min(num_subspaces,
    out) subspaces, and subspace k of n_k rows trains A_k (s_k x r') and B_k (n_k x s_k), with
    s_k = min(n_k, subspace_rank). With subspace_rank 1 (the default) this is K·r' + out whatever the
    clusters (they partition the rows and k-means leaves none empty)."""
    # (a larger subspace_rank, or use_dynamic_rank, makes s_k depend on the k-means clusters' sizes)
    assert o["subspace_rank"] == 1 and not o.get("use_dynamic_rank", False)
    r_eff = min(m.r, out, i + int(bias))
    return min(o["num_subspaces"], out) * r_eff + out


def _formula(cfg) -> int:
    """Trainable parameters by each method's count over the adapted layers, plus the head."""
    m, o = cfg.method, cfg.method.options
    shapes, targets = target_shapes(cfg), _targets(cfg)
    per_module = {
        "lokr": lambda i, out, bias: _lokr(m, o, i, out),
        # N = ceil(min(in, out)/r) random bases, each with a diagonal Λ_n (r) and Γ_n (min(in, out))
        "randlora": lambda i, out, bias: math.ceil(min(i, out) / m.r) * (m.r + min(i, out)),
        # the tweaker reads W0's columns (length out): A (out -> r), depth r x r encoder and decoder
        # layers, B (r -> out); the count does not depend on in
        "peanut": lambda i, out, bias: 2 * m.r * out + 2 * o.get("depth", 0) * m.r ** 2,
        "frod": lambda i, out, bias: _frod(o, i),
        # R (r x r) in the weight's top-r singular subspace, orthogonal by Cayley: r(r-1)/2 skew
        # entries, plus peft's two magnitude vectors on its sides (psoft_mag_b, psoft_mag_a: r each)
        "psoft": lambda i, out, bias: m.r * (m.r - 1) // 2 + 2 * m.r,
        # the top min(in, out)//2 singular directions stay frozen (effective_rank unset); the other
        # t = min - min//2 train: U_low (out x t), S_low (t), V_low (t x in)
        "osf": lambda i, out, bias: (min(i, out) - min(i, out) // 2) * (i + out + 1),
        # floor((1 - sparsity) · in · out) weight entries (the largest-magnitude ones); no LoRA part
        # (Supra) since rank_option is null
        "supertuning": lambda i, out, bias: int(i * out * (1 - o["sparsity"])),
        "adamss": lambda i, out, bias: _adamss(m, o, i, out, bias),
        # W0 + W0⊙A + B with A, B of rank r (2r(in+out)); bias b0 + b0·D + E + W0·C with C a rank-r
        # in x 1 column (r(in+1)) and D, E one scalar each (peft's default config_D_E: constant)
        "glora": lambda i, out, bias: 2 * m.r * (i + out) + (m.r * (i + 1) + 2 if bias else 0),
    }
    if m.name in per_module:
        assert [(i, out) for _, i, out, _ in targets] == shapes  # the same layers as the helper's
        return sum(per_module[m.name](i, out, bias) for _, i, out, bias in targets) + head_size(cfg)
    if m.name == "lily":
        return _lily(m, o, targets) + head_size(cfg)
    if m.name == "tinylora":  # one vector v of length u per group of tied layers (no tying: per layer)
        groups = max(1, round(len(shapes) * (1 - o.get("weight_tying", 0.0))))
        return o["u"] * groups + head_size(cfg)
    raise KeyError(m.name)


METHODS = ["lokr", "randlora", "lily", "peanut", "tinylora", "frod", "psoft", "osf", "supertuning",
           "adamss", "glora"]


@pytest.mark.parametrize("method", METHODS)
def test_trainable_counts_follow_each_papers_formula(store_path, method):
    cfg = build_config(store_path, f"method={method}")
    adapted = build_from(cfg, base_model(cfg))
    assert adapted.count_parameters()[0] == _formula(cfg)


@pytest.mark.parametrize("method,overrides", [
    ("lokr", ["method.r=2"]),  # at r=8 every W2 of the tiny model is stored full: this takes the low-rank branch
    ("peanut", ["method.options.depth=2"]),  # the default depth 0 has no hidden layers
    ("lily", ["method.options.stride_A=2", "method.options.num_B=3"]),  # A shared by pairs of layers
    ("tinylora", ["+method.options.weight_tying=0.5"]),  # half as many vectors as layers
])
def test_trainable_counts_follow_the_formula_off_the_defaults(store_path, method, overrides):
    """The terms the defaults leave at zero or unused on the tiny model."""
    cfg = build_config(store_path, f"method={method}", *overrides)
    adapted = build_from(cfg, base_model(cfg))
    assert adapted.count_parameters()[0] == _formula(cfg)


def _soft_prompt_formula(cfg, config) -> int:
    """The soft prompts' counts on a causal LM (``config``: its transformers config), from the
    virtual tokens V, the layers L and the encoder width h."""
    o = cfg.method.options
    v = o["num_virtual_tokens"]
    if cfg.method.name == "prefix_tuning":
        # a key and a value vector per virtual token in every layer, without the projection MLP;
        # peft sizes them as the attention's keys: head_dim x key/value heads (grouped-query)
        head_dim = config.hidden_size // config.num_attention_heads
        return v * config.num_hidden_layers * 2 * head_dim * config.num_key_value_heads
    # P-tuning's MLP encoder: V embeddings of width d, then d -> h -> h -> d with biases
    d, h = config.hidden_size, o["encoder_hidden_size"]
    return v * d + (d * h + h) + (h * h + h) + (h * d + d)


@pytest.mark.parametrize("method", ["prefix_tuning", "p_tuning"])
def test_soft_prompt_counts_follow_their_formula(store_path, method):
    """(Prompt tuning's V x width is checked in test_methods_catalogue.py.)"""
    from harness.models.load import load_model

    cfg = build_config(store_path, f"method={method}", "model=tiny_llama", "task=rotten_tomatoes_prompt")
    lm = load_model(cfg.model, cfg.quant, 0, torch.device("cpu"), causal_lm=True).model
    assert lm.config.num_key_value_heads < lm.config.num_attention_heads  # grouped-query: the case that differs
    adapted = build_from(cfg, lm)
    assert adapted.count_parameters()[0] == _soft_prompt_formula(cfg, lm.config)
