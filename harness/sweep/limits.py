"""What a job asks that its model or the network cannot give, found before anything trains:
``task.max_length`` past the model's positions (read from its config without loading it: an
encoder has no embedding for a longer input, and a decoder was never trained on one), and data
on the Hugging Face hub that cannot be reached (:mod:`harness.tasks.online`).
"""
from __future__ import annotations

from harness.models.shapes import model_config
from harness.tasks.check import tasks_of
from harness.tasks.online import unreachable_data

POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx")


def positions(model_cfg) -> tuple[int, str] | None:
    """(the longest input the model has positions for, the config key that says so), read from its
    config without loading it; None when that is not on disk."""
    config = dict(model_cfg.tiny) if model_cfg.tiny else model_config(model_cfg.source,
                                                                       getattr(model_cfg, "revision", None))
    for key in POSITION_KEYS:
        value = (config or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None


def out_of_reach(cfg) -> str | None:
    """One line on what this run's model or network cannot give its task, or None."""
    tasks = tasks_of(cfg.task)
    unreachable = next((reason for reason in map(unreachable_data, tasks) if reason), None)
    found = positions(cfg.model)
    longest = max(t.max_length for t in tasks)
    if unreachable is None and found and longest > found[0]:
        return (f"task.max_length={longest} is more than model {cfg.model.name} has positions for "
                f"({found[1]}={found[0]} in its config): set task.max_length to at most {found[0]}")
    return unreachable
