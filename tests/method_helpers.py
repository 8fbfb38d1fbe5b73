"""Helpers for the method tests: build a method on the tiny model through the registry, as the
runner does, step it with the trainer's own loss, and count what a method should train from the
base model's module shapes (not from the method)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, default_collate

from harness.run import pipeline
from harness.job.validation import validate
from harness.methods import MethodContext, TrainingStart
from harness.models.load import load_model
from harness.tasks.types import TASK_TYPES
from harness.training.loop import training_loss
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def build_config(store_path, *overrides):
    return validate(tiny_config(store_path, *overrides))


def method_context(cfg, device: torch.device = CPU) -> MethodContext:
    """The context the runner gives a method (harness.run.pipeline.method_context)."""
    return pipeline.method_context(cfg, TASK_TYPES.get(cfg.task.task_type)(), device)


def base_model(cfg, num_labels: int = 2, problem_type: str | None = None):
    torch.manual_seed(0)
    return load_model(cfg.model, cfg.quant, num_labels, CPU, problem_type=problem_type).model


def build_from(cfg, model):
    """The method of ``cfg`` on ``model``, built through the registry as the runner builds it."""
    return pipeline.build_method(cfg, model, method_context(cfg))


def build(store_path, *overrides):
    cfg = build_config(store_path, *overrides)
    return build_from(cfg, base_model(cfg))


def batch(seed: int = 0, size: int = 8, length: int = 12) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, 40, (size, length), generator=g),
            "attention_mask": torch.ones(size, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (size,), generator=g)}


def train_batches(n: int = 4, size: int = 8) -> DataLoader:
    """``n`` batches like :func:`batch`, as a DataLoader over their examples (what
    ``TrainingStart.train_batches`` is)."""
    examples = [{k: v[i] for k, v in batch(seed, size).items()}
                for seed in range(1, n + 1) for i in range(size)]
    return DataLoader(examples, batch_size=size, shuffle=False, collate_fn=default_collate)


def task_type_examples(kind_name: str, n: int = 16, length: int = 12, labels: int = 3,
                       choices: int = 3) -> list[dict]:
    """Examples shaped as each task type's encoding gives them: a class index, a 0/1 vector over
    ``labels`` labels, or ``choices`` sequences and the index of the right one."""
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(n):
        shape = (choices, length) if kind_name == "multiple_choice" else (length,)
        example = {"input_ids": torch.randint(5, 40, shape, generator=g),
                   "attention_mask": torch.ones(shape, dtype=torch.long)}
        if kind_name == "multi_label":
            example["labels"] = torch.tensor([(i >> j) & 1 for j in range(labels)])
        else:
            example["labels"] = torch.tensor(i % (choices if kind_name == "multiple_choice" else 2))
        out.append(example)
    return out


def encode_examples(split, tokenizer, max_length: int) -> list[dict]:
    """Token ids, mask, label (and task id on multi-task data) per example of a single-label split."""
    enc = tokenizer(split.texts, truncation=True, max_length=max_length)
    examples = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], split.labels)]
    if split.task_ids is not None:
        for example, task_id in zip(examples, split.task_ids):
            example["task_ids"] = task_id
    return examples


def start(adapted, total: int, batches: DataLoader | None = None) -> None:
    """The method's one "before training" hook, as the runner calls it."""
    adapted.before_training(TrainingStart(total, batches if batches is not None else train_batches(), CPU))


def train_steps(adapted, steps: int, total: int | None = None, on_step=None, batches=None):
    """Run ``steps`` optimizer steps in the order of harness.training.loop.train, with its loss
    (``harness.training.loop.training_loss``: the task type's loss plus the method's extra term);
    ``batches``: an iterable of batches (default: :func:`batch` with seeds 1, 2, ...); a
    DataLoader is also what ``before_training`` is given."""
    total = total or steps
    start(adapted, total, batches if isinstance(batches, DataLoader) else None)
    optimizer = adapted.make_optimizer()
    adapted.model.train()
    kind = adapted.ctx.task_type
    source = iter(batches) if batches is not None else (batch(step) for step in range(1, steps + 1))
    for step, b in zip(range(1, steps + 1), source):
        training_loss(adapted, kind, b).backward()
        optimizer.step()
        adapted.after_optimizer_step(step, total)
        optimizer.zero_grad(set_to_none=True)
        if on_step:
            on_step(step)
    return optimizer


def target_shapes(cfg) -> list[tuple[int, int]]:
    """(in, out) of every Linear the method adapts, read off a fresh base model."""
    model = base_model(cfg)
    targets = set(cfg.method.target_modules or cfg.model.target_modules)
    return [(m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets]


def head_size(cfg) -> int:
    model = base_model(cfg)
    return sum(p.numel() for name in cfg.model.head_modules
               for p in model.get_submodule(name).parameters())


def expected_trainable(cfg) -> int:
    """Trainable parameters by each paper's formula over the adapted shapes, plus the head."""
    m, shapes = cfg.method, target_shapes(cfg)
    per_module = {
        "lora": lambda i, o: m.r * (i + o),
        "loraplus": lambda i, o: m.r * (i + o),
        "delta_lora": lambda i, o: m.r * (i + o),
        "lorafa": lambda i, o: m.r * o,  # only B
        "double_lora": lambda i, o: 2 * m.r * (i + o),
        "adalora": lambda i, o: getattr(m, "init_r", 0) * (i + o + 1),  # P, Q and Λ
        "vera": lambda i, o: o + m.r,  # λ_b and λ_d
    }[m.name]
    return sum(per_module(i, o) for i, o in shapes) + head_size(cfg)
