"""HyperLoRA and multi-task data: per-task, per-layer factors; gradients reach only the
hypernetwork and the head; task ids travel with each example; one head over the union labels."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.config import ConfigError

from harness.job.validation import validate
from harness.methods import METHODS
from harness.methods.hyperlora import GeneratedLoRALinear
from harness.models.load import load_model
from harness.tasks import load_task
from harness.tasks.multitask import per_task_splits, task_names
from harness.tasks.multiple_choice import MultipleChoice
from harness.training.loop import loader, training_loss
from tests.conftest import tiny_config
from tests.method_helpers import build_config, build_from, encode_examples, method_context

MULTI = ("method=hyperlora", "task=multi_synthetic", "method.dropout=0.0")


def setup(store_path, *overrides):
    cfg = build_config(store_path, *MULTI, *overrides)
    data = load_task(cfg.task)
    loaded = load_model(cfg.model, cfg.quant, data.num_labels, torch.device("cpu"))
    torch.manual_seed(0)
    adapted = build_from(cfg, loaded.model)
    batches = loader(encode_examples(data.train, loaded.tokenizer, 32), loaded.tokenizer, 8, True, 0)
    return adapted, data, batches


def train_steps(adapted, batches, n):
    optimizer = adapted.make_optimizer()
    adapted.model.train()
    for _, batch in zip(range(n), batches):
        training_loss(adapted, adapted.ctx.task_type, batch).backward()
        optimizer.step()
        optimizer.zero_grad()


def test_multitask_data_has_union_labels_and_a_task_id_per_example(store_path):
    cfg = validate(tiny_config(store_path, *MULTI))
    data = load_task(cfg.task)
    assert data.task_names == task_names(cfg.task) == ["sentiment", "inverted"]
    assert data.label_names == ["inverted:negative", "inverted:positive",
                                "sentiment:negative", "sentiment:positive"]
    assert sorted(set(data.train.task_ids)) == [0, 1] and len(data.train.task_ids) == len(data.train)
    # the inverted task has the same texts as the sentiment task with the opposite label
    parts = {name: split for name, split, _ in per_task_splits(data, data.train)}
    names = data.label_names
    sent = {t: names[y].split(":")[1] for t, y in zip(parts["sentiment"].texts, parts["sentiment"].labels)}
    inv = {t: names[y].split(":")[1] for t, y in zip(parts["inverted"].texts, parts["inverted"].labels)}
    common = set(sent) & set(inv)
    assert common and all(sent[t] != inv[t] for t in common)
    assert all(names[y].startswith("inverted:") for y in parts["inverted"].labels)


def test_a_multitask_config_needs_two_tasks(store_path):
    with pytest.raises(ConfigError, match="task.subtasks must list at least 2 tasks"):
        validate(tiny_config(store_path, "task=multi_synthetic", "~task.subtasks.inverted"))


def test_generated_factors_differ_per_task_and_per_layer(store_path):
    adapted, _, batches = setup(store_path)
    train_steps(adapted, batches, 3)  # B's generator starts at zero
    layers = [m for m in adapted.model.modules() if isinstance(m, GeneratedLoRALinear)]
    query = [m for m in layers if m.kind.endswith("attention.self.query")]
    net = adapted.hypernet

    def factors(layer, task):
        shape = (layer.base.in_features, layer.base.out_features)
        return net.factors(torch.tensor([task]), layer.layer, layer.kind, shape)

    a0, b0 = factors(query[0], 0)
    a1, b1 = factors(query[0], 1)
    a_other, b_other = factors(query[1], 0)
    assert b0.abs().sum() > 0
    assert not torch.allclose(a0, a1) and not torch.allclose(b0, b1)
    assert not torch.allclose(a0, a_other) and not torch.allclose(b0, b_other)


def test_gradients_reach_the_hypernetwork_and_embeddings_not_the_base(store_path):
    adapted, _, batches = setup(store_path)
    train_steps(adapted, batches, 1)
    adapted.model.train()
    batch = next(iter(batches))
    training_loss(adapted, adapted.ctx.task_type, batch).backward()
    for name, p in adapted.hypernet.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    used = set(batch["task_ids"].tolist())
    grads = adapted.hypernet.task_embeddings.weight.grad
    assert all((grads[t].abs().sum() > 0) == (t in used) for t in range(2))
    base = [n for n, p in adapted.model.named_parameters()
            if "lora_hypernetwork" not in n and not n.startswith("classifier")]
    assert base and all(not dict(adapted.model.named_parameters())[n].requires_grad for n in base)
    assert all(dict(adapted.model.named_parameters())[n].grad is None for n in base)


def test_each_example_uses_its_own_tasks_adapter(store_path):
    adapted, _, batches = setup(store_path)
    train_steps(adapted, batches, 3)
    adapted.model.eval()
    batch = {k: v for k, v in next(iter(batches)).items() if k != "labels"}
    mixed = batch["task_ids"].clone()
    mixed[::2], mixed[1::2] = 0, 1
    with torch.no_grad():
        together = adapted.model(**{**batch, "task_ids": mixed}).logits
        alone = [adapted.model(**{**batch, "task_ids": torch.full_like(mixed, t)}).logits for t in (0, 1)]
    expected = torch.where((mixed == 0)[:, None], alone[0], alone[1])
    assert torch.allclose(together, expected, atol=1e-5)
    assert not torch.allclose(alone[0], alone[1])


def test_trainable_count_matches_an_independent_count(store_path):
    adapted, _, _ = setup(store_path)
    m = adapted.method
    d, h, p, r = m.task_embedding_dim, m.hidden_dim, m.projected_dim, m.r
    layers = [x for x in adapted.model.modules() if isinstance(x, GeneratedLoRALinear)]
    kinds = {x.kind for x in layers}
    shapes = {(x.base.in_features, x.base.out_features) for x in layers}
    n_layers = build_config(store_path, *MULTI).model.tiny["num_hidden_layers"]
    expected = ((2 + n_layers + 1 + len(kinds)) * d  # task, layer (+1 outside layers), kind embeddings
                + 3 * d * h + h + h * p + p + 2 * p  # projector MLP and its LayerNorm
                + sum((p + 1) * r * i + (p + 1) * o * r for i, o in shapes)  # generators
                + sum(x.numel() for x in adapted.model.classifier.parameters()))
    assert adapted.count_parameters()[0] == expected


def test_a_single_task_run_is_one_task(store_path):
    cfg = build_config(store_path, "method=hyperlora")
    loaded = load_model(cfg.model, cfg.quant, 2, torch.device("cpu"))
    adapted = build_from(cfg, loaded.model)
    assert adapted.tasks == ["synthetic"] and adapted.hypernet.task_embeddings.num_embeddings == 1


def _choice_batch(n=4, choices=3, length=10):
    g = torch.Generator().manual_seed(2)
    return {"input_ids": torch.randint(5, 40, (n, choices, length), generator=g),
            "attention_mask": torch.ones(n, choices, length, dtype=torch.long),
            "labels": torch.arange(n) % choices}


def test_multiple_choice_examples_use_their_tasks_adapter_for_every_choice(store_path):
    cfg = build_config(store_path, *MULTI)
    kind = MultipleChoice()
    ctx = dataclasses.replace(method_context(cfg), task_type=kind)
    model = load_model(cfg.model, cfg.quant, kind.head_size(5), torch.device("cpu")).model
    adapted = METHODS.get("hyperlora").build(model, cfg.method, ctx)
    with torch.no_grad():
        for generator in adapted.hypernet.b_generators.values():
            generator.weight.normal_()  # B's generator starts at zero
    adapted.model.eval()
    batch = _choice_batch()
    mixed = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        together = kind.logits(adapted.model, {**batch, "task_ids": mixed})
        alone = [kind.logits(adapted.model, {**batch, "task_ids": torch.full_like(mixed, t)}) for t in (0, 1)]
    assert together.shape == (4, 3)
    expected = torch.where((mixed == 0)[:, None], alone[0], alone[1])
    assert torch.allclose(together, expected, atol=1e-5)
    assert not torch.allclose(alone[0], alone[1])
    # one training step with the task type's loss reaches the hypernetwork
    adapted.model.train()
    training_loss(adapted, kind, {**batch, "task_ids": mixed}).backward()
    assert adapted.hypernet.task_embeddings.weight.grad.abs().sum() > 0


def test_task_ids_that_do_not_match_the_batch_are_refused(store_path):
    adapted, _, batches = setup(store_path)
    batch = next(iter(batches))
    with pytest.raises(RuntimeError, match="task ids for a batch of"):
        adapted.model(**{**adapted.ctx.task_type.model_inputs(batch), "task_ids": batch["task_ids"][:2]})


def test_generated_factors_move_per_step_as_much_as_lora_factors(store_path):
    """The 1/dim(I) multiplier: one Adam step at rate lr moves every entry of a generated B by at
    most lr (|I|_1 / dim(I) <= 1 for a LayerNorm output), as a trained LoRA factor moves; without
    it an entry would move by about lr * |I|_1, dim(I) times more. A starts at LoRA's scale."""
    adapted, _, batches = setup(store_path, "method.lr=1e-3")
    net = adapted.hypernet
    layers = [m for m in adapted.model.modules() if isinstance(m, GeneratedLoRALinear)]
    layer = layers[0]
    shape = (layer.base.in_features, layer.base.out_features)
    with torch.no_grad():
        a0, b0 = net.factors(torch.tensor([0]), layer.layer, layer.kind, shape)
    assert b0.abs().max() == 0
    # kaiming-uniform (LoRA's A): std 1/sqrt(3 in), within sampling noise
    assert a0.std().item() == pytest.approx((3 * shape[0]) ** -0.5, rel=0.2)
    optimizer = adapted.make_optimizer()
    assert all(g["lr"] == 1e-3 for g in optimizer.param_groups)
    adapted.model.train()
    training_loss(adapted, adapted.ctx.task_type, next(iter(batches))).backward()
    optimizer.step()
    with torch.no_grad():
        _, b1 = net.factors(torch.tensor([0]), layer.layer, layer.kind, shape)
    moved = (b1 - b0).abs().max().item()
    p = adapted.method.projected_dim
    assert 0.3e-3 < moved <= 1e-3 * (1 + 1 / p) * 1.001


def test_one_task_batches_take_the_shared_factor_path_with_the_same_result(store_path):
    adapted, _, batches = setup(store_path)
    train_steps(adapted, batches, 2)
    adapted.model.eval()
    layer = next(m for m in adapted.model.modules() if isinstance(m, GeneratedLoRALinear))
    x = torch.randn(4, 5, layer.base.in_features)
    net = adapted.hypernet
    net.task_ids = torch.ones(4, dtype=torch.long)
    a, b = layer.example_factors(4, x.device)
    assert len(a) == 1  # one pair for the whole batch
    fast = layer.delta(x)
    per_example = torch.einsum("n...r,nor->n...o", torch.einsum("n...i,nri->n...r", x, a.expand(4, -1, -1)),
                               b.expand(4, -1, -1)) * layer.scale
    assert torch.allclose(fast, per_example, atol=1e-6) and fast.abs().sum() > 0
    net.task_ids = None
