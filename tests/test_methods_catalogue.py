"""The catalogue of peft tuners (``builder: peft``): each trains through the trainer's own loss,
only its own tensors and the head get gradients, the base stays as it was (or, for PiSSA and
OLoRA, is replaced once by the residual of the adapter's start), the trainable count follows the
method's formula, 4-bit support is what the config declares, and unsupported runs are refused
before training in one line."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from harness.paths import conf_dir
from tests.conftest import TINY
from tests.method_helpers import base_model, build_config, build_from, head_size, target_shapes, train_steps

ALL = sorted(p.stem for p in (conf_dir() / "method").glob("*.yaml") if OmegaConf.load(p).get("builder") == "peft")
SOFT_PROMPTS = ["p_tuning", "prefix_tuning", "prompt_tuning"]  # causal-LM prompt tasks only
CATALOGUE = [m for m in ALL if m not in SOFT_PROMPTS]  # adapters and reparameterizations
# EVA's SVD on the tiny random batches converges in a few steps at tau 0.9 (peft's 0.99: ~80)
FAST = {"eva": ["method.options.eva_config.tau=0.9"]}


def test_the_catalogue_is_every_listed_tuner():
    assert len(CATALOGUE) == 36 and len(ALL) == 39
    assert {"ia3", "loha", "lokr", "oft", "boft", "hra", "miss", "fourierft", "randlora", "c3a", "shira",
            "vblora", "ln_tuning", "rslora", "pissa", "olora", "eva", "corda", *SOFT_PROMPTS} <= set(ALL)
    # LoftQ (a config of the method group's package, like qlora) is tested in test_lora_inits.py


def _prefix(adapted) -> str:
    return type(adapted.model.base_model).prefix


@pytest.mark.parametrize("method", CATALOGUE)
def test_each_tuner_trains_its_own_tensors_and_leaves_the_base(store_path, method):
    cfg = build_config(store_path, f"method={method}", *FAST.get(method, []))
    adapted = build_from(cfg, base_model(cfg))
    prefix, head = _prefix(adapted), cfg.model.head_modules[0]
    state: dict = {}
    hook = adapted.before_training

    def after_hook(start):  # EVA sets new ranks and CorDA the base's residual there, once
        hook(start)
        state["trainable"] = {n: p for n, p in adapted.model.named_parameters() if p.requires_grad}
        state["frozen"] = {n: p.detach().clone() for n, p in adapted.model.named_parameters()
                           if not p.requires_grad}
        state["before"] = {n: p.detach().clone() for n, p in state["trainable"].items()}

    adapted.before_training = after_hook
    train_steps(adapted, 2)
    trainable, frozen, before = state["trainable"], state["frozen"], state["before"]
    assert trainable and all(prefix in n or head in n for n in trainable), sorted(trainable)[:5]
    assert any(prefix in n for n in trainable)
    params = dict(adapted.model.named_parameters())
    assert all(torch.equal(frozen[n], params[n]) for n in frozen), "a frozen tensor moved"
    moved = [n for n in before if prefix in n and not torch.equal(before[n], params[n])]
    assert moved, "no tensor of the tuner changed in training"
    assert adapted.count_parameters()[0] == sum(p.numel() for p in trainable.values())


def _formula(cfg, adapted) -> int | None:
    """Trainable parameters by each paper's count over the adapted layers, plus the head."""
    m = cfg.method
    shapes = target_shapes(cfg)
    o = m.options
    per_module = {
        "loha": lambda i, out: 2 * m.r * (i + out),  # W1a, W1b, W2a, W2b
        "hra": lambda i, out: m.r * i,  # r Householder vectors of length in
        "fourierft": lambda i, out: o["n_frequency"],  # the spectral coefficients
        "shira": lambda i, out: m.r * (i + out),  # r(m+n) sparse entries
        "c3a": lambda i, out: i * out // o["block_size"],  # one kernel per block pair
        "rslora": lambda i, out: m.r * (i + out), "pissa": lambda i, out: m.r * (i + out),
        "olora": lambda i, out: m.r * (i + out),
        "corda": lambda i, out: m.r * (i + out), "loftq": lambda i, out: m.r * (i + out),
        "hira": lambda i, out: m.r * (i + out),  # A (r x in) and B (out x r), Hadamard with W0
        "delora": lambda i, out: m.r * (i + out) + 1,  # A, B and the strength lambda
        "miss": lambda i, out: m.r * out,  # one shared r x out block
        # n butterfly factors of in/b blocks, each b x b as peft stores it, and the output scale
        "boft": lambda i, out: (o["boft_n_butterfly_factor"] * (i // o["boft_block_size"])
                                * o["boft_block_size"] ** 2 + out),
        "gralora": lambda i, out: m.r * (i + out),  # k x k blocks of rank r/k: LoRA's count
        "pvera": lambda i, out: out + 2 * m.r,  # lambda_b, and lambda_d's mean and spread
        # logits over the shared bank for every sub-vector of length L of A's and B's rows
        "vblora": lambda i, out: m.r * o["num_vectors"] * (i + out) // o["vector_length"],
        "deft": lambda i, out: m.r * (i + out),  # P and R of the projection
        "waveft": lambda i, out: o["n_frequency"],  # the wavelet coefficients
        "beft": lambda i, out: out,  # the layer's bias
        "road": lambda i, out: out,  # road_1: one angle and one scale per pair of outputs
        # block-diagonal orthogonal R: in/b blocks, each a b x b skew-symmetric (Cayley) generator
        "oft": lambda i, out: (i // o["oft_block_size"]) * o["oft_block_size"] * (o["oft_block_size"] - 1) // 2,
    }
    if m.name == "vblora":  # the bank of num_vectors vectors, shared by every layer
        return (sum(per_module["vblora"](i, out) for i, out in shapes)
                + o["num_vectors"] * o["vector_length"] + head_size(cfg))
    if m.name in per_module:
        return sum(per_module[m.name](i, out) for i, out in shapes) + head_size(cfg)
    if m.name == "unilora":  # one trainable vector for every layer's factors
        return o["theta_d_length"] + head_size(cfg)
    base = base_model(cfg)
    if m.name == "ln_tuning":  # every normalization layer's scale and shift
        return sum(p.numel() for name, mod in base.named_modules() if name.split(".")[-1] in cfg.model.norm_modules
                   for p in mod.parameters()) + head_size(cfg)
    if m.name == "ia3":  # one vector per adapted layer: its outputs, or a feed-forward layer's inputs
        cfg_peft = adapted.model.peft_config["default"]
        ff = set(cfg_peft.feedforward_modules)
        n = 0
        for name, mod in base.named_modules():
            if isinstance(mod, torch.nn.Linear) and any(name.endswith(t) for t in cfg_peft.target_modules):
                n += mod.in_features if any(name.endswith(f) for f in ff) else mod.out_features
        return n + head_size(cfg)
    return None


@pytest.mark.parametrize("method", ["loha", "hra", "fourierft", "shira", "c3a", "rslora", "pissa", "olora",
                                    "ln_tuning", "ia3", "corda", "loftq", "hira", "deft", "waveft", "beft",
                                    "road", "oft", "unilora", "delora", "gralora", "pvera", "vblora",
                                    "miss", "boft"])
def test_trainable_counts_follow_each_papers_formula(store_path, method):
    cfg = build_config(store_path, f"method={method}")
    adapted = build_from(cfg, base_model(cfg))
    assert adapted.count_parameters()[0] == _formula(cfg, adapted)


def test_rslora_scales_by_the_square_root_of_the_rank(store_path):
    cfg = build_config(store_path, "method=rslora", "method.r=16", "method.alpha=8")
    adapted = build_from(cfg, base_model(cfg))
    scalings = {layer.scaling["default"] for layer in adapted.model.modules() if hasattr(layer, "lora_A")}
    assert len(scalings) == 1 and scalings.pop() == pytest.approx(8 / 16 ** 0.5)  # LoRA's would be 0.5


@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_pissa_and_olora_start_from_the_weight_and_freeze_its_residual(store_path, method):
    """The base weight becomes W - s·B·A for the adapter's starting factors: the model computes
    what it did before training, and the factors carry the weight's principal (PiSSA) or
    orthonormal (OLoRA) part."""
    cfg = build_config(store_path, f"method={method}")
    original = {n: m.weight.detach().clone() for n, m in base_model(cfg).named_modules()
                if isinstance(m, torch.nn.Linear)}
    adapted = build_from(cfg, base_model(cfg))
    layers = [(n, m) for n, m in adapted.model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert layers
    for name, layer in layers:
        w0 = original[name.removeprefix("base_model.model.")]
        residual = layer.base_layer.weight.detach()
        delta = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        assert not torch.allclose(residual, w0)  # the base really changed once
        assert torch.allclose(residual + delta, w0, atol=1e-5)
        assert not layer.base_layer.weight.requires_grad


QUANTIZED = [m for m in CATALOGUE if OmegaConf.load(conf_dir() / "method" / f"{m}.yaml").get("quant") == "any"]


# EVA on 4-bit: ~1,500 SVD batches of random tokens (its mechanism runs by default on a full-precision
# base in test_lora_inits.py, and a 4-bit LoRA base in QLoRA's tests)
@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m == "eva" else m for m in QUANTIZED])
def test_tuners_declared_4bit_train_on_a_base_that_stays_4bit(store_path, method):
    import bitsandbytes as bnb

    # (on a 4-bit base EVA's SVD of random tokens needs ~1,500 batches at tau 0.9, about 13 s; the
    # synthetic task's real tokens: 24. This test is about the base.)
    fast = ["method.options.eva_config.tau=0.9", "method.options.max_batches=5000"] if method == "eva" else []
    cfg = build_config(store_path, f"method={method}", "quant=nf4", *fast)
    adapted = build_from(cfg, base_model(cfg))
    four_bit = [m for m in adapted.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and all(m.weight.dtype == torch.uint8 for m in four_bit)
    before = [m.weight.detach().clone() for m in four_bit]
    train_steps(adapted, 1)
    assert all(torch.equal(b, m.weight) for b, m in zip(before, four_bit))


def _refused(args: list[str], tmp_path) -> str:
    done = subprocess.run([sys.executable, "-m", "harness", *TINY, *args, f"store.url={tmp_path / 'r.db'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert not (tmp_path / "r.db").exists()
    return done.stderr


@pytest.mark.parametrize("args,needle", [
    (["method=loha", "quant=nf4"], "method=loha cannot train a 4-bit base: use quant=none"),
    (["method=ia3", "model.family=gpt2"], "method=ia3 cannot be applied to model family gpt2 (model=tiny_bert); "
                                          "supported: bert, llama, mistral, qwen2, gemma"),
    (["method=ln_tuning", "model.norm_modules=[]"], "method=ln_tuning trains normalization layers and "
                                                    "model=tiny_bert names none"),
    (["method=oft", "+method.options.task_type=SEQ_CLS"], "method.options may not set task_type"),
    (["method=oft", "method.targets=everything"], "method.targets must be one of model, norms, peft"),
])
def test_unsupported_runs_are_refused_in_one_line(tmp_path, args, needle):
    assert needle in _refused(args, tmp_path)


def test_an_unknown_peft_type_fails_the_run_naming_the_allowed_ones(run_tiny):
    row = run_tiny("method=oft", "method.peft_type=NOPE")
    assert row["status"] == "failed" and "method.peft_type='NOPE' is not a tuner of the installed peft" in row["error"]


def test_a_tuner_without_a_rank_records_none(run_tiny):
    row = run_tiny("method=ia3")
    assert row["status"] == "finished", row.get("error")
    assert row["r"] is None


def _lm(cfg):
    """The tiny causal LM as a prompt-task run loads it (its own output layer, no head)."""
    from harness.models.load import load_model

    torch.manual_seed(0)
    return load_model(cfg.model, cfg.quant, 0, torch.device("cpu"), causal_lm=True).model


@pytest.mark.parametrize("task", ["rotten_tomatoes_prompt", "rotten_tomatoes_choice"])
@pytest.mark.parametrize("method", SOFT_PROMPTS)
def test_soft_prompts_train_the_prompt_alone_on_a_causal_lm(store_path, run_tiny, method, task):
    """Only the virtual tokens' embeddings (or their encoder) train; the language model, its
    output layer included, stays frozen; the run is scored like every prompt-task run."""
    cfg = build_config(store_path, f"method={method}", "model=tiny_llama", f"task={task}")
    adapted = build_from(cfg, _lm(cfg))
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_encoder.") for n in trainable), sorted(trainable)
    frozen = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if not p.requires_grad}
    row = run_tiny(f"method={method}", "model=tiny_llama", f"task={task}")
    assert row["status"] == "finished", row.get("error")
    assert row["r"] is None and row["infer_latency_merged_ms"] is None and row["trainable_params"] > 0
    if method == "prompt_tuning":  # 20 virtual tokens of the model's width
        assert row["trainable_params"] == 20 * _lm(cfg).config.hidden_size
    assert frozen  # the base is all there, frozen


def test_a_soft_prompt_shifts_the_scored_positions_by_its_length(store_path):
    """Prompt tuning puts its virtual tokens before the inputs: the answer's log-likelihood must be
    read that many positions later (harness.tasks.scoring.lm.virtual_tokens), or it scores the wrong tokens.
    Scoring through the harness equals reading the model's full logits by hand."""
    from harness.tasks.scoring.lm import IGNORE, answer_nll, virtual_tokens

    cfg = build_config(store_path, "method=prompt_tuning", "model=tiny_llama", "task=rotten_tomatoes_prompt")
    adapted = build_from(cfg, _lm(cfg))
    model = adapted.model.eval()
    assert virtual_tokens(model) == 20
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    labels = torch.full_like(ids, IGNORE)
    labels[0, 4:] = ids[0, 4:]
    with torch.no_grad():
        nll, mask = answer_nll(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels)
        full = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].log_softmax(-1)
    # Logit rows 20 + 3 and 20 + 4 predict tokens 4 and 5 of the input.
    by_hand = -torch.stack([full[20 + 3, ids[0, 4]], full[20 + 4, ids[0, 5]]])
    assert full.shape[0] == 26 and mask.sum() == 2
    torch.testing.assert_close(nll[mask], by_hand)
