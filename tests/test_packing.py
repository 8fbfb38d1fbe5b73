"""Padding-free packing of causal-LM prompt rows (trainer.packing): the same per-example answer
losses and trained answer tokens as padded batches, no padding, the run's example and token
counts unchanged, and what packing cannot serve refused in one line."""
from __future__ import annotations

import pytest
import torch

from harness.job.validation import validate
from harness.run.pipeline import setup
from harness.tasks.scoring.lm import answer_nll
from tests.conftest import compose_config
from tests.test_bad_input import run_harness

PROMPT = ["model=tiny_llama", "task=synthetic", "task.task_type=generation", "trainer=smoke",
          "method=lora", "trainer.autocast=off"]


def test_a_packed_batch_gives_each_answer_token_the_padded_batchs_loss():
    cfg = validate(compose_config([*PROMPT, "trainer.packing=true"]))
    s = setup(cfg, torch.device("cpu"))
    examples = s.encoded["train"].examples[:8]
    padded = s.kind.collator(s.loaded.tokenizer)(examples)
    packed = s.batches["train"].collate_fn(examples)
    assert packed["packed"] and packed["n_rows"] == 8 and packed["input_ids"].shape[0] == 1
    # no padding: every position is a token of some example
    assert packed["input_ids"].numel() == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()
    model = s.adapted.model.eval()
    nll_a, mask_a = answer_nll(model, s.kind.model_inputs(padded), padded["labels"])
    nll_b, mask_b = answer_nll(model, s.kind.model_inputs(packed), packed["labels"])
    assert int(mask_a.sum()) == int(mask_b.sum()) > 0  # the same answer tokens are trained
    torch.testing.assert_close(nll_b[mask_b], nll_a[mask_a], rtol=1e-5, atol=1e-5)
    # per example: its answer tokens' mean loss, padded and packed
    counts = [len(e["input_ids"]) - e["n_prompt"] for e in examples]
    per_a = [t.mean() for t in torch.split(nll_a[mask_a], counts)]
    per_b = [t.mean() for t in torch.split(nll_b[mask_b], counts)]
    torch.testing.assert_close(torch.stack(per_b), torch.stack(per_a), rtol=1e-5, atol=1e-5)
    loss_a, loss_b = s.kind.batch_loss(model, padded), s.kind.batch_loss(model, packed)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)


def test_attention_stays_within_each_packed_row():
    """Changing the first example changes no later example's answer losses in the packed row."""
    cfg = validate(compose_config([*PROMPT, "trainer.packing=true"]))
    s = setup(cfg, torch.device("cpu"))
    examples = [dict(e) for e in s.encoded["train"].examples[:4]]
    collate, model = s.batches["train"].collate_fn, s.adapted.model.eval()
    before = collate(examples)
    examples[0] = {**examples[0], "input_ids": [5] * len(examples[0]["input_ids"])}
    after = collate(examples)
    nll_1, mask = answer_nll(model, s.kind.model_inputs(before), before["labels"])
    nll_2, _ = answer_nll(model, s.kind.model_inputs(after), after["labels"])
    first = len(examples[0]["input_ids"]) - examples[0]["n_prompt"]
    torch.testing.assert_close(nll_2[mask][first:], nll_1[mask][first:], rtol=1e-5, atol=1e-6)


def test_a_packed_run_sees_the_padded_runs_examples_and_tokens(run_tiny):
    padded = run_tiny(*PROMPT[:5], "trainer.autocast=off")
    packed = run_tiny(*PROMPT[:5], "trainer.autocast=off", "trainer.packing=true")
    assert packed["status"] == "finished", packed.get("error")
    for key in ("optimizer_steps", "train_examples_seen", "train_tokens"):
        assert packed[key] == padded[key], key
    assert packed["config_hash"] != padded["config_hash"]  # packing is part of the run's identity
    assert packed["train_flops_per_token"] > 0


@pytest.mark.parametrize("extra, needle", [
    (["model=tiny_bert", "task=synthetic"], "trainer.packing=true packs the prompt rows of a causal language model"),
    ([*PROMPT[:4], "method=prompt_tuning"], "trainer.packing=true cannot serve method=prompt_tuning"),
    ([*PROMPT[:4], "trainer.processes=2", "trainer.isolate=true"], "trainer.packing=true puts a batch in one row"),
])
def test_what_packing_cannot_serve_is_refused_in_one_line(extra, needle, tmp_path):
    store = tmp_path / "s.sqlite"
    ran = run_harness(["trainer=smoke", *extra, "trainer.packing=true", f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and needle in ran.err and not store.exists(), ran.err
