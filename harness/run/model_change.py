"""What fine-tuning did to the model besides its task: how much general text it forgot
(:mod:`harness.training.forgetting`, causal LMs) and the shape of its weight update
(:mod:`harness.run.update_shape`, methods whose update is a weight matrix).

:func:`before_training` runs after setup and before the first training step: the probe's loss
of the model as built (so full fine-tuning, whose base weights move, is measured right), and what
the update will be measured against; neither draws from a random-number generator the run uses.
:func:`after_training` runs after the test and before inference timing (which merges the
adapters), outside the memory phases, so the run's eval time and eval peak are its own. What they
measure is recorded in the row (``forgetting*``, ``update_*``), summarised in its details, and in
full, one entry per adapted layer, in ``model_change.json`` in the run's folder. A measurement
that fails leaves its fields empty with the reason in the details; it never fails the run.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.probe import parse_probe
from harness.errors import first_line
from harness.run import update_shape
from harness.run.parallel import rank
from harness.tasks.probe import digest, probe_passages
from harness.training.forgetting import encode_passages, mean_token_loss

FILE = "model_change.json"


@dataclass
class Kept:
    """What :func:`before_training` measured and kept for :func:`after_training`."""

    rows: list[list[int]] = field(default_factory=list)  # the probe's token rows
    probe: dict = field(default_factory=dict)  # source, passages, tokens, digest, loss_before
    before: update_shape.Before | None = None
    notes: dict = field(default_factory=dict)  # why a measurement is empty
    seconds: dict = field(default_factory=dict)  # what each measurement took


def _probe_loss(s, cfg, rows: list[list[int]]) -> tuple[float, int]:
    tok = s.loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    with s.adapted.inference():
        return mean_token_loss(s.adapted.model, rows, pad, s.device, s.use_bf16, cfg.trainer.eval_batch_size)


def before_training(s, cfg, work_dir: Path, parallel=None) -> Kept:
    """The probe's loss before training and the update's starting point, where they apply: a
    causal LM for the probe, a method with a weight update for its shape; not in a run FSDP
    shards (no process holds the whole model), and on the first process only."""
    kept, t = Kept(), cfg.trainer
    if (parallel is not None and parallel.fsdp) or rank() != 0:
        return kept
    probe = parse_probe(t.forgetting_probe)
    if probe is not None and s.kind.causal_lm:
        passages, source = probe_passages(probe, t.forgetting_passages)
        kept.rows = encode_passages(s.loaded.tokenizer, passages, t.forgetting_max_tokens)
        kept.probe = {"source": source, "passages": len(kept.rows), "digest": digest(passages)}
        try:
            start = time.perf_counter()
            kept.probe["loss_before"], kept.probe["tokens"] = _probe_loss(s, cfg, kept.rows)
            kept.seconds["forgetting_before"] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - a measurement never fails the run
            kept.notes["forgetting"] = f"not measured: {first_line(exc)}"
    if t.update_shape and s.trainable:
        try:
            start = time.perf_counter()
            kept.before = update_shape.keep_before(s.adapted.model, s.adapted.ctx, work_dir)
        except Exception as exc:  # noqa: BLE001
            kept.notes["update_shape"] = f"not measured: {first_line(exc)}"
        kept.seconds["update_shape_before"] = time.perf_counter() - start
    return kept


def _forgetting(s, cfg, kept: Kept) -> dict:
    if "loss_before" not in kept.probe:
        return {}
    try:
        start = time.perf_counter()
        after, _ = _probe_loss(s, cfg, kept.rows)
        kept.seconds["forgetting_after"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        kept.notes["forgetting"] = f"not measured after training: {first_line(exc)}"
        return {}
    kept.probe["loss_after"] = after
    return {"forgetting_loss_before": kept.probe["loss_before"], "forgetting_loss_after": after,
            "forgetting": after - kept.probe["loss_before"]}


def after_training(s, cfg, kept: Kept, work_dir: Path) -> dict:
    """The fields, with the trained model as tested (before its adapters are merged), and the
    per-layer values written to ``<run folder>/model_change.json``."""
    fields = _forgetting(s, cfg, kept)
    layers: list[dict] = []
    if kept.before is not None:
        start = time.perf_counter()
        try:
            layers, reason = update_shape.measure(s.adapted.model, kept.before)
        except Exception as exc:  # noqa: BLE001
            reason = f"not measured: {first_line(exc)}"
        if reason:
            kept.notes["update_shape"] = reason
        fields.update(update_shape.summary(layers) if layers else {})
        kept.seconds["update_shape"] = time.perf_counter() - start
    if not (kept.probe or kept.before is not None or kept.notes):
        return fields
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / FILE).write_text(json.dumps({"forgetting": kept.probe, "update_shape": layers,
                                             "notes": kept.notes, "seconds": kept.seconds}, indent=1, default=str))
    fields["_details"] = {**({"forgetting_probe": {k: v for k, v in kept.probe.items() if "loss" not in k}}
                             if kept.probe else {}),
                          **({"update_shape_layers": len(layers)} if kept.before is not None else {}),
                          **({"model_change_notes": kept.notes} if kept.notes else {}),
                          "model_change_s": {k: round(v, 3) for k, v in kept.seconds.items()}}
    return fields


def record(fields: dict, changed: dict) -> None:
    """Add what :func:`after_training` measured to the run's fields and its details."""
    extra = dict(changed)
    details = extra.pop("_details", {})
    fields.update(extra)
    if details:
        fields["details_json"] = json.dumps({**json.loads(fields["details_json"]), **details},
                                            sort_keys=True, default=str)
