"""trainer.dropout_rng=numpy: CPU dropout masks from numpy's PCG64 instead of torch's serial
Mersenne Twister. Dropout's own mechanism (drop probability p, survivors scaled by 1/(1-p), the
gradient through the same mask), seen through the trainer's own code path."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from harness.training.dropout import MaskSource, numpy_dropout

FAST = ["method=lora", "trainer.autocast=off", "trainer.latency_batches=1"]


def test_masks_drop_p_of_the_elements_and_follow_the_seed():
    p, n = 0.1, 1_000_000
    keep = MaskSource(0).keep(torch.Size([n]), p)
    dropped = 1 - keep.float().mean().item()
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)  # five standard errors
    assert torch.equal(MaskSource(0).keep(torch.Size([64, 9]), p), MaskSource(0).keep(torch.Size([64, 9]), p))
    assert not torch.equal(MaskSource(0).keep(torch.Size([64, 9]), p), MaskSource(1).keep(torch.Size([64, 9]), p))
    assert not torch.equal(MaskSource(0, rank=0).keep(torch.Size([64, 9]), p),
                           MaskSource(0, rank=1).keep(torch.Size([64, 9]), p))
    one = MaskSource(3)
    assert not torch.equal(one.keep(torch.Size([64, 9]), p), one.keep(torch.Size([64, 9]), p))  # a stream


@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_scales_survivors_and_the_gradient_goes_through_the_same_mask(inplace):
    torch.manual_seed(0)
    x = torch.randn(8, 16, 32, requires_grad=True)
    layer = torch.nn.Dropout(0.25, inplace=inplace)
    before = torch.get_rng_state()
    with numpy_dropout(seed=0):
        y = layer(x * 1.0)  # a non-leaf, which in-place dropout may write to
    assert torch.equal(torch.get_rng_state(), before)  # torch's generator drew nothing
    kept = y != 0
    assert torch.allclose(y[kept], (x * (1 / 0.75))[kept])
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    y.backward(torch.ones_like(y))
    assert torch.allclose(x.grad, kept.float() / 0.75)  # d(dropout)/dx = mask / (1 - p)


def test_evaluation_and_other_devices_and_the_exit_are_torchs():
    x = torch.randn(4, 8)
    original = torch.nn.functional.dropout
    with numpy_dropout(seed=0):
        assert torch.equal(torch.nn.functional.dropout(x, 0.5, training=False), x)
        assert torch.equal(torch.nn.functional.dropout(x, 0.0, training=True), x)
        assert torch.nn.functional.dropout is not original
    assert torch.nn.functional.dropout is original


def test_a_run_draws_its_masks_from_numpy_in_the_trainers_loop(run_tiny, monkeypatch):
    drawn = []
    keep = MaskSource.keep
    monkeypatch.setattr(MaskSource, "keep", lambda self, shape, p: drawn.append(p) or keep(self, shape, p))
    default = run_tiny(*FAST)
    assert drawn == []
    fast = run_tiny(*FAST, "trainer.dropout_rng=numpy")
    assert fast["status"] == "finished", fast.get("error")
    assert set(drawn) == {0.1, 0.05}  # tiny_bert's hidden dropout and LoRA's lora_dropout, as it trained
    assert fast["config_hash"] != default["config_hash"]  # fast and torch runs never pool
    assert json.loads(fast["details_json"])["dropout_rng"] == "numpy"
    assert json.loads(default["details_json"])["dropout_rng"] == "torch"
    assert fast["optimizer_steps"] == default["optimizer_steps"]
    assert fast["eval_loss"] != default["eval_loss"]  # other elements dropped: other numbers


def test_the_default_keeps_the_hash_runs_had_before_the_setting():
    from harness.results.identity import hashed_part
    from omegaconf import OmegaConf
    from tests.conftest import tiny_config

    cfg = OmegaConf.to_container(tiny_config("unused.sqlite"), resolve=True)
    assert "dropout_rng" not in hashed_part(cfg, identity={})["trainer"]
    cfg["trainer"]["dropout_rng"] = "numpy"
    assert hashed_part(cfg, identity={})["trainer"]["dropout_rng"] == "numpy"


def test_gradient_checkpointing_is_refused_in_one_line():
    done = subprocess.run([sys.executable, "-m", "harness", "trainer.dropout_rng=numpy",
                           "trainer.gradient_checkpointing=true"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: trainer.dropout_rng=numpy")
