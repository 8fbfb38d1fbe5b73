"""trainer.loss_chunk_tokens: a causal LM's answer loss computed a chunk of positions at a time,
each chunk's vocabulary-sized logits recomputed in the backward pass instead of kept. The same
per-token losses and gradients as one pass; no saved tensor as large as the whole logits; through
the trainer's own loss; refused where it cannot serve."""
from __future__ import annotations

import math

import torch

from harness.job.validation import validate
from harness.run.pipeline import setup
from harness.tasks.scoring.lm import answer_nll
from tests.conftest import compose_config
from tests.test_bad_input import run_harness

PROMPT = ["model=tiny_llama", "task=synthetic", "task.task_type=generation", "trainer=smoke",
          "method=lora", "trainer.autocast=off"]


def _step(s, batch, chunk):
    """One training loss and its gradients, through the task's own batch_loss."""
    model = s.adapted.model  # in eval mode: no dropout, so both passes see the same function
    s.kind.loss_chunk = chunk
    model.zero_grad(set_to_none=True)
    vocab = model.get_output_embeddings().out_features
    saved = [0]  # the sizes of the logits-shaped tensors autograd keeps for the backward pass
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: (t.dim() > 1 and t.shape[-1] == vocab and saved.append(t.numel())) or t, lambda t: t):
        loss = s.kind.batch_loss(model, s.kind.model_inputs(batch) | {"labels": batch["labels"]})
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, max(saved)


def test_chunks_give_one_pass_losses_and_gradients_without_keeping_the_logits():
    cfg = validate(compose_config([*PROMPT, "trainer.loss_chunk_tokens=3"]))
    s = setup(cfg, torch.device("cpu"))
    assert s.kind.loss_chunk == 3  # the pipeline gave the task the setting
    torch.nn.Module.train(s.adapted.model, False)  # no dropout: both passes see the same model
    batch = s.kind.collator(s.loaded.tokenizer)(s.encoded["train"].examples[:8])
    model = s.adapted.model
    nll_a, mask_a = answer_nll(model, s.kind.model_inputs(batch), batch["labels"])
    nll_b, mask_b = answer_nll(model, s.kind.model_inputs(batch), batch["labels"], chunk=3)
    assert torch.equal(mask_a, mask_b) and int(mask_a.sum()) > 3  # more answer tokens than a chunk
    torch.testing.assert_close(nll_b, nll_a, rtol=1e-5, atol=1e-6)

    vocab = model.get_output_embeddings().out_features
    whole = nll_a.numel() * vocab  # the logits of every kept position
    loss_a, grads_a, biggest_a = _step(s, batch, None)
    loss_b, grads_b, biggest_b = _step(s, batch, 3)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a  # LoRA's matrices get gradients in both
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6)
    assert biggest_a >= whole  # one pass keeps the whole logits for its backward
    assert biggest_b == 0  # chunks: none kept, each recomputed in the backward pass


def test_a_chunked_run_trains_as_the_one_pass_run(run_tiny):
    one = run_tiny(*PROMPT[:5], "trainer.autocast=off")
    chunked = run_tiny(*PROMPT[:5], "trainer.autocast=off", "trainer.loss_chunk_tokens=2")
    assert chunked["status"] == "finished", chunked.get("error")
    assert chunked["config_hash"] != one["config_hash"]  # recorded in the run's identity
    assert chunked["optimizer_steps"] == one["optimizer_steps"]
    assert math.isclose(chunked["eval_loss"], one["eval_loss"], rel_tol=1e-4)


def test_what_chunks_cannot_serve_is_refused_in_one_line(tmp_path):
    for overrides, words in ((["model=tiny_bert", "task=synthetic", "trainer.loss_chunk_tokens=8"],
                              "needs a prompt task"),
                             ([*PROMPT, "trainer.loss_chunk_tokens=0"], "trainer.loss_chunk_tokens"),
                             ([*PROMPT, "trainer.loss_chunk_tokens=8", "trainer.compile=true"],
                              "torch.compile")):
        done = run_harness([*overrides, f"store.url={tmp_path / 'r.sqlite'}"], tmp_path)
        assert done.code == 2, done.err
        line = done.err_lines[-1]
        assert line.startswith("error: ") and words in line, line


def test_the_memory_benchmark_runs_at_tiny_shapes():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "bench_loss_memory.py"
    done = subprocess.run([sys.executable, str(script), "--vocab", "4096", "--hidden", "64", "--prompt", "8",
                           "--answer", "64", "--chunk", "16", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith(("one", "chunks of"))}
    one, chunked = rows["one"], rows["chunks"]
    assert one[-1] == chunked[-1]  # the same loss to the printed digits
    assert "chunks / one pass:" in done.stdout


def test_a_forward_set_on_the_output_layer_is_put_back():
    """accelerate's dispatch hooks set ``forward`` on the module itself: the chunked loss's
    pass-through must restore that one, not the class's."""
    from harness.tasks.scoring.chunked import hidden_states_out

    head = torch.nn.Linear(4, 8)
    hooked = head.forward
    head.forward = hooked
    with hidden_states_out(head):
        assert head(torch.ones(4)).shape == (4,)  # passed through
    assert head.forward is hooked
    plain = torch.nn.Linear(4, 8)
    with hidden_states_out(plain):
        pass
    assert "forward" not in plain.__dict__
