"""Stored expected losses, as torchtune's recipe tests keep them: every method config of
``conf/method`` takes a few optimizer steps on the tiny model, from a fixed seed, through the
trainer's own path, and its losses must stay the ones in ``tests/expected_losses.json``. A change
in any method's mathematics (its update, its optimizer, its hooks, its initialisation) fails the
test whose id is that method's name.

The path is the runner's: seed, load the base, seed again, build through the method registry
(``harness.run.pipeline.build_method``), ``before_training(TrainingStart)`` (AdaLoRA's schedule,
LoRA-drop's probe), the held-out loss, the method's optimizer, then per step
``harness.training.loop.training_loss`` (the task loss plus the method's extra term), backward, gradient
clipping at ``trainer.max_grad_norm``, ``optimizer.step()``, ``after_optimizer_step`` (AdaLoRA's
allocation, Delta-LoRA's base-weight move, DyLoRA's next rank). As in method_helpers.train_steps,
there is no learning-rate schedule and no autocast (the runner's linear warm-up and bf16 autocast
are not the method's mathematics); the model's own dropout is on, from the seed. The data are
this file's own (not method_helpers'), so that nothing outside it moves the numbers. Recorded:
the loss on a held-out batch before the steps (the initialisation), the training loss of every
step, and the held-out loss after the last step (which sees the last update).

Every field of every method config is pinned here (``PINS``), so that a change of a default in
conf/method or harness/methods does not move these numbers; a field that is not pinned fails
the test, naming it. Regenerate the file only after changing the pins, the steps or the data
here, or on purpose after a change of a method's mathematics:

    python -m tests.test_expected_losses --regenerate            # every method
    python -m tests.test_expected_losses --regenerate lora dora  # some
    EXPECTED_LOSSES_REGENERATE=1 python -m pytest tests/test_expected_losses.py   # same, in pytest

Tolerance: rtol 1e-4 (atol 1e-6). Measured here: the numbers are bitwise equal between two runs
in one process (checked below) and between processes (the file is written by another process);
with 2 threads instead of 1 they differ by <= 2e-7 relative (float32 sums reordered). 1e-4 leaves
a margin of ~500x for other CPUs and BLAS builds, while the steps move every method's held-out
loss by 10x the tolerance or more (checked below), so a lost or changed update shows.
4-bit NF4 base (qlora, qdora): just as deterministic here (the weights dequantize from fixed
4-bit codes to float32), but the 4-bit matmul is bitsandbytes' CPU kernel, chosen when it is
imported (it first tries an optional kernels-community gemm_4bit), which may accumulate
differently on another install; those two get rtol 1e-3, still >= 10x below how far the steps
move them. FRoD gets its own tolerance, for the reason given at RTOL_METHOD.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.conftest import tiny_config  # first: sets the offline environment and one thread

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, default_collate  # noqa: E402

from harness.run import pipeline  # noqa: E402
from harness.methods import TrainingStart, builder_name  # noqa: E402
from harness.models.load import load_model  # noqa: E402
from harness.paths import conf_dir  # noqa: E402
from harness.tasks.types import TASK_TYPES  # noqa: E402
from harness.training.loop import training_loss  # noqa: E402
from harness.job.validation import validate  # noqa: E402

EXPECTED = Path(__file__).with_name("expected_losses.json")
REGENERATE_ENV = "EXPECTED_LOSSES_REGENERATE"
HOW_TO_REGENERATE = (f"python -m tests.test_expected_losses --regenerate <method> "
                     f"(or {REGENERATE_ENV}=1 python -m pytest tests/test_expected_losses.py)")
CPU = torch.device("cpu")
STEPS, BATCH, LENGTH = 4, 8, 12
RTOL, RTOL_4BIT, ATOL = 1e-4, 1e-3, 1e-6
# FRoD's frozen basis is the eigenvectors of a matrix built from the stacked weights
# (torch.linalg.eigh; a full SVD for wide stacks), ill-conditioned where eigenvalues nearly
# coincide, so LAPACK's summation order moves its trajectory far more than float32 rounding moves
# the others: measured up to 2.5e-4 relative (1, 2, 3, 4 and 8 threads on an Intel Xeon against
# the file written on an AMD EPYC), against 0 to 1e-7 for LoRA, DoRA, VeRA, AdaLoRA. 6e-4 leaves
# 2.4x that, and its steps still move its held-out loss by more than 10x (checked below).
RTOL_METHOD = {"frod": 6e-4}


def rtol_of(name: str, four_bit: bool) -> float:
    return RTOL_METHOD.get(name, RTOL_4BIT if four_bit else RTOL)

# The run around the method.
RUN = ["seed=0", "trainer.max_grad_norm=1.0"]
QUANT_4BIT = ["quant.quant_type=nf4", "quant.double_quant=true", "quant.compute_dtype=float32"]

# Every field of a method config, pinned (by field name; BUILDER_PINS override per builder).
# Not pinned: what names the config (name, builder, quant need, use_dora: DoRA *is* the config).
IDENTITY = {"name", "builder", "quant", "use_dora",
            # a peft tuner's config (builder: peft) is named by its type and its own settings
            "peft_type", "options", "rank_option", "alpha_option", "dropout_option", "seed_option",
            "targets", "mergeable", "merge_on_4bit", "task_types", "families", "reference"}
PINS = {
    "r": 4, "alpha": 8.0, "dropout": 0.0, "lr": 5e-3, "weight_decay": 0.0,
    "target_modules": "[query,key,value,dense]",
    # AdaLoRA: rank 6 -> 4 over the 4 steps, pruned at every step between warm-up and the end.
    "init_r": 6, "tinit_ratio": 0.25, "tfinal_ratio": 0.25, "delta_t": 1, "beta1": 0.85,
    "beta2": 0.85, "orth_reg_weight": 0.1,
    # LoRA+: the ratio on the B matrices only (not on biases, the harness's default)
    "lr_ratio": 16.0, "ratio_on_1d": False,
    # Delta-LoRA: the base weights move from the 2nd step on, within the 4 (K = 0.25 x 4 = 1).
    "update_ratio": 2.0, "start_ratio": 0.25, "start_steps": None,
    # DyLoRA: ranks drawn from [1, r] by the generator seeded with the run's seed (seed=0 above);
    # frozen: the paper's mode, only the b-th row of A / column of B trains at each step.
    "r_min": 1, "frozen": True, "eval_ranks": None,
    # LoRA-drop: the probe trains on a quarter of the 32 examples (seeded) before the steps.
    "threshold": 0.9, "sample_fraction": 0.25, "probe_epochs": 1,
    # HyperLoRA
    "task_embedding_dim": 16, "hidden_dim": 32, "projected_dim": 16,
    # VeRA
    "d_initial": 0.1, "save_projection": True,
}
# Rates that move the loss clearly in 4 steps without making the trajectory erratic (an erratic
# one would magnify float noise between machines).
BUILDER_PINS = {
    "full": {"lr": 1e-3, "weight_decay": 0.01},
    "vera": {"r": 16, "lr": 1e-2},
    "loraplus": {"lr": 1e-3},  # B at 16x
    "hyperlora": {"lr": 1e-3},  # every layer's factors move with the one hypernetwork
    "dylora": {"lr": 2e-2},  # frozen mode: one row and column per step
}
# ... and per config where its start differs: LoftQ's adapter starts at the quantization error
# (B != 0), so at the shared rate 4 steps move the held-out loss less than the 4-bit tolerance.
METHOD_PINS = {"loftq": {"lr": 2e-2}}


class UnpinnedField(Exception):
    pass


def method_names() -> list[str]:
    """Every method config that trains a network on the tiny classification model (not tfidf,
    which has no steps, nor the prompt-task-only configs: zero_shot and the soft prompts)."""
    from harness.config import ConfigError
    from harness.methods import METHODS

    names = []
    for p in sorted((conf_dir() / "method").glob("*.yaml")):
        try:
            cfg = validate(tiny_config(Path("unused.sqlite"), f"method={p.stem}"))
        except ConfigError:
            continue
        if not METHODS.get(builder_name(cfg.method)).standalone:
            names.append(p.stem)
    return names


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def pinned_overrides(name: str, store: Path) -> list[str]:
    """The command-line overrides of this method's reference run: the run's, every field of the
    method config pinned, and the 4-bit base's settings when the config selects one."""
    cfg = validate(tiny_config(store, f"method={name}"))
    pins = {**PINS, **BUILDER_PINS.get(builder_name(cfg.method), {}), **METHOD_PINS.get(name, {})}
    fields = [f.name for f in dataclasses.fields(cfg.method)]
    unpinned = sorted(set(fields) - IDENTITY - set(pins))
    if unpinned:
        raise UnpinnedField(f"method={name} has fields this test does not pin: {unpinned}; add them "
                            f"to PINS (or BUILDER_PINS) in {Path(__file__).name}, then regenerate: "
                            f"{HOW_TO_REGENERATE}")
    over = [f"method={name}", *RUN]
    over += [f"method.{k}={_value(pins[k])}" for k in fields if k not in IDENTITY]
    if cfg.quant.load_in_4bit:
        over += QUANT_4BIT
    return over


def _examples(seed: int, n: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (n, LENGTH), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long),
             "labels": labels[i]} for i in range(n)]


def trajectory(name: str, store: Path) -> dict:
    """The reference run of method config ``name``: its overrides, the held-out loss before the
    steps, the training loss of each step and the held-out loss after the last."""
    overrides = pinned_overrides(name, store)
    cfg = validate(tiny_config(store, *overrides))
    kind = TASK_TYPES.get(cfg.task.task_type)()
    pipeline.seed_everything(cfg.seed)
    model = load_model(cfg.model, cfg.quant, kind.head_size(2), CPU,
                       problem_type=kind.problem_type).model
    pipeline.seed_everything(cfg.seed)  # the adapters start from the seed, as in pipeline.setup
    adapted = pipeline.build_method(cfg, model, pipeline.method_context(cfg, kind, CPU))

    train = DataLoader(_examples(1, STEPS * BATCH), batch_size=BATCH, shuffle=False,
                       collate_fn=default_collate)
    held_out = default_collate(_examples(2, 2 * BATCH))
    adapted.before_training(TrainingStart(STEPS, train, CPU))
    eval_before = held_out_loss(adapted, kind, held_out)
    optimizer = adapted.make_optimizer()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    adapted.model.train()
    for step, batch in enumerate(train, start=1):
        loss = training_loss(adapted, kind, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.trainer.max_grad_norm)
        optimizer.step()
        adapted.after_optimizer_step(step, STEPS)
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return {"overrides": overrides, "four_bit": bool(cfg.quant.load_in_4bit),
            "eval_loss_before": eval_before, "losses": losses,
            "eval_loss": held_out_loss(adapted, kind, held_out)}


@torch.no_grad()
def held_out_loss(adapted, kind, batch: dict) -> float:
    adapted.model.eval()
    try:
        return float(kind.loss(kind.logits(adapted.model, batch), batch["labels"]))
    finally:
        adapted.model.train()


def load_expected() -> dict:
    if not EXPECTED.is_file():
        return {}
    return json.loads(EXPECTED.read_text())["methods"]


def save_expected(methods: dict) -> None:
    doc = {"_how": "Written by tests/test_expected_losses.py; regenerate with "
                   + HOW_TO_REGENERATE.replace("<method>", "[method ...]"),
           "steps": STEPS, "batch_size": BATCH, "torch": torch.__version__,
           "methods": {k: methods[k] for k in sorted(methods)}}
    EXPECTED.write_text(json.dumps(doc, indent=1) + "\n")


def regenerate(names: list[str]) -> dict:
    methods = load_expected()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            methods[name] = trajectory(name, Path(tmp) / "unused.sqlite")
            print(f"{name}: {methods[name]['losses']} eval {methods[name]['eval_loss']}")
    for stale in set(methods) - set(method_names()):
        del methods[stale]
    save_expected(methods)
    return methods


# --- tests ---------------------------------------------------------------------------------

_RUNS: dict[str, dict] = {}  # this process's runs, for the repeatability check


@pytest.mark.parametrize("name", method_names())
def test_losses_match_the_stored_ones(store_path, name):
    if os.environ.get(REGENERATE_ENV):
        regenerate([name])
    expected = load_expected().get(name)
    if expected is None:
        pytest.fail(f"no stored expected losses for method={name} in {EXPECTED.name}; run "
                    + HOW_TO_REGENERATE.replace("<method>", name))
    try:
        overrides = pinned_overrides(name, store_path)
    except UnpinnedField as e:
        pytest.fail(str(e))
    assert overrides == expected["overrides"], (
        f"the pinned settings of method={name} changed since {EXPECTED.name} was written; if on "
        f"purpose, run " + HOW_TO_REGENERATE.replace("<method>", name))
    got = _RUNS[name] = trajectory(name, store_path)
    rtol = rtol_of(name, got["four_bit"])
    want = [expected["eval_loss_before"], *expected["losses"], expected["eval_loss"]]
    have = [got["eval_loss_before"], *got["losses"], got["eval_loss"]]
    assert len(have) == len(want)
    mismatch = [(i, h, w) for i, (h, w) in enumerate(zip(have, want))
                if abs(h - w) > ATOL + rtol * abs(w)]
    assert not mismatch, (
        f"method={name}: losses {have} (held-out, train steps 1..{STEPS}, held-out) differ from the stored "
        f"{want} at {mismatch} (rtol {rtol}). If the method's mathematics changed on purpose, "
        f"run " + HOW_TO_REGENERATE.replace("<method>", name))


@pytest.mark.parametrize("name", method_names())
def test_losses_are_repeatable_in_one_process(store_path, name):
    """A second run in the same process gives the same numbers bitwise (the stored ones were
    written by another process: the test above checks across processes)."""
    first = _RUNS.get(name) or trajectory(name, store_path)
    second = trajectory(name, store_path)
    keys = ("eval_loss_before", "losses", "eval_loss")
    assert [second[k] for k in keys] == [first[k] for k in keys]


def test_no_stored_method_is_gone():
    stale = sorted(set(load_expected()) - set(method_names()))
    assert not stale, (f"{EXPECTED.name} holds methods with no config in conf/method: {stale}; "
                       f"regenerate: python -m tests.test_expected_losses --regenerate")


def test_the_steps_move_the_stored_losses():
    """The stored numbers can catch a change in a method's update: the steps move the held-out
    loss by ten times the tolerance or more (it would not move if the update were lost)."""
    for name, entry in load_expected().items():
        before, after = entry["eval_loss_before"], entry["eval_loss"]
        rtol = rtol_of(name, entry["four_bit"])
        assert abs(after - before) > 10 * (ATOL + rtol * abs(before)), (name, after - before)


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "--regenerate":
        sys.exit(f"usage: python -m tests.test_expected_losses --regenerate [method ...]\n"
                 f"methods: {' '.join(method_names())}")
    os.environ.setdefault("PEFT_HARNESS_CACHE", tempfile.mkdtemp(prefix="expected-losses-cache-"))
    regenerate(args[1:] or method_names())
    print(f"wrote {EXPECTED}")
