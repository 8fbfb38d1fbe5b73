"""LoRA-drop: importance as defined, selection by threshold, one shared adapter, honest counts."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from harness.config import ConfigError

from harness.job.validation import validate
from harness.methods import METHODS, TrainingStart
from harness.methods.lora_drop import LoRAFactors, select_layers, stratified_sample
from harness.methods.lowrank import layer_and_kind
from harness.models.load import load_model
from harness.tasks import load_task
from harness.tasks.multiple_choice import MultipleChoice
from harness.tasks.types import MultiLabel
from harness.training.loop import loader, training_loss
from tests.conftest import tiny_config
from tests.method_helpers import build_config, build_from, encode_examples, method_context

FOUR_LAYERS = "model.tiny.num_hidden_layers=4"
CPU = torch.device("cpu")


def setup(store_path, *overrides):
    cfg = build_config(store_path, "method=lora_drop", "method.dropout=0.0", *overrides)
    loaded = load_model(cfg.model, cfg.quant, 2, CPU)
    torch.manual_seed(0)
    adapted = build_from(cfg, loaded.model)
    data = load_task(cfg.task)
    batches = loader(encode_examples(data.train, loaded.tokenizer, 32), loaded.tokenizer, 8, True, 0)
    return adapted, batches


def before_training(adapted, batches) -> None:
    adapted.before_training(TrainingStart(len(batches), batches, CPU))


def test_selection_keeps_the_most_important_up_to_the_threshold():
    scores = {"a": 5.0, "b": 3.0, "c": 1.5, "d": 0.5}  # normalised: .5 .3 .15 .05
    assert select_layers(scores, 0.5) == ["a"]
    assert select_layers(scores, 0.8) == ["a", "b"]
    assert select_layers(scores, 0.81) == ["a", "b", "c"]
    assert select_layers(scores, 1.0) == ["a", "b", "c", "d"]


def test_probe_sample_is_stratified_by_label():
    examples = [{"labels": i % 4 == 0} for i in range(400)]  # 100 of label 1, 300 of label 0
    sample = stratified_sample(examples, 0.1, seed=0)
    assert sum(e["labels"] for e in sample) == 10 and len(sample) == 40


def test_multi_label_probe_sample_is_stratified_by_label_set():
    sets = [[1, 0, 0]] * 200 + [[0, 1, 1]] * 100 + [[0, 0, 0]] * 50 + [[1, 1, 1]] * 3
    examples = [{"labels": list(s), "i": i} for i, s in enumerate(sets)]
    sample = stratified_sample(examples, 0.1, seed=0)
    counts = {}
    for e in sample:
        counts[tuple(e["labels"])] = counts.get(tuple(e["labels"]), 0) + 1
    assert counts == {(1, 0, 0): 20, (0, 1, 1): 10, (0, 0, 0): 5, (1, 1, 1): 1}
    assert [e["i"] for e in sample] == sorted(e["i"] for e in sample)  # in data order
    as_tensors = [{"labels": torch.tensor(e["labels"]), "i": e["i"]} for e in examples]
    assert [e["i"] for e in stratified_sample(as_tensors, 0.1, seed=0)] == [e["i"] for e in sample]


def layer_inputs(adapted, batches, to_inputs) -> tuple[dict, list]:
    """Give every adapter a non-zero B, run the batches (as ``to_inputs`` makes them model
    inputs) and return each adapted layer's inputs and each batch's attention mask."""
    with torch.no_grad():
        for layer in adapted.layers.values():
            layer.adapter.lora_B.normal_()
    inputs, masks = {}, []

    def keep(name):
        return lambda module, args, out: inputs.setdefault(name, []).append(args[0])

    handles = [layer.base.register_forward_hook(keep(n)) for n, layer in adapted.layers.items()]
    adapted.model.eval()
    with torch.no_grad():
        for b in batches:
            flat = to_inputs(b)
            masks.append(flat["attention_mask"].float())
            adapted.model(**flat)
    for h in handles:
        h.remove()
    return inputs, masks


def test_importance_is_the_summed_squared_norm_of_the_adapter_output(store_path):
    adapted, batches = setup(store_path)
    inputs, masks = layer_inputs(adapted, batches, lambda b: b)
    scale = adapted.method.alpha / adapted.method.r
    scores = adapted.importance(batches, torch.device("cpu"))
    for name, layer in adapted.layers.items():
        a, b = layer.adapter.lora_A, layer.adapter.lora_B
        expected = 0.0
        for x, mask in zip(inputs[name], masks):
            sq = (scale * x @ a.T @ b.T).pow(2).sum(-1)
            expected += float((sq * mask).sum() if sq.dim() == 2 else sq.sum())
        assert scores[name] == pytest.approx(expected, rel=1e-4), name


def test_unimportant_layers_share_one_adapter_and_counts_match(store_path):
    adapted, batches = setup(store_path, FOUR_LAYERS, "method.threshold=0.3",
                             "method.sample_fraction=0.5")
    lora_count = adapted.count_parameters()[0]
    before_training(adapted, batches)
    facts = adapted.details()["lora_drop"]
    assert facts["shared_adapter"], "a threshold of 0.3 on 4 layers must drop some"
    for kind, names in facts["shared_adapter"].items():
        adapters = {id(adapted.layers[n].adapter) for n in names}
        assert len(adapters) == 1 and isinstance(adapted.layers[names[0]].adapter, LoRAFactors)
        kept = [n for n in facts["own_adapter"] if layer_and_kind(n)[1] == kind]
        assert not set(kept) & set(names)
        # the kept layers are the most important ones and reach the threshold
        imp = facts["importance"]
        assert min(imp[n] for n in kept) >= max(imp[n] for n in names)
        by_importance = sorted(kept, key=imp.get, reverse=True)
        assert sum(imp[n] for n in by_importance) >= 0.3 > sum(imp[n] for n in by_importance[:-1])
    # Independent count: head + r (in + out) per kept layer + one adapter per shared kind.
    r = adapted.method.r
    size = {n: r * (l.base.in_features + l.base.out_features) for n, l in adapted.layers.items()}
    head = sum(p.numel() for p in adapted.model.classifier.parameters())
    expected = head + sum(size[n] for n in facts["own_adapter"]) + sum(
        size[names[0]] for names in facts["shared_adapter"].values())
    assert adapted.count_parameters()[0] == expected < lora_count
    assert facts["adapter_params_kept"] == expected - head
    assert facts["adapter_params_lora"] == lora_count - head

    # The shared tensors receive the gradient of every layer that uses them and train as one.
    shared_names = next(iter(facts["shared_adapter"].values()))
    shared = adapted.layers[shared_names[0]].adapter
    optimizer = adapted.make_optimizer()
    assert sum(p is shared.lora_B for g in optimizer.param_groups for p in g["params"]) == 1
    adapted.model.train()
    training_loss(adapted, adapted.ctx.task_type, next(iter(batches))).backward()
    optimizer.step()
    assert shared.lora_B.abs().sum() > 0
    assert all(adapted.layers[n].adapter.lora_B.data_ptr() == shared.lora_B.data_ptr() for n in shared_names)


def test_probe_leaves_the_adapters_and_head_at_their_initial_values(store_path):
    adapted, batches = setup(store_path, "method.threshold=1.0")
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if p.requires_grad}
    before_training(adapted, batches)
    after = dict(adapted.model.named_parameters())
    assert adapted.details()["lora_drop"]["probe_steps"] > 0
    assert all(torch.equal(v, after[n]) for n, v in before.items())


def test_bad_threshold_fails_with_one_line(store_path):
    with pytest.raises(ConfigError, match=r"method.threshold must be in \(0, 1\]"):
        validate(tiny_config(store_path, "method=lora_drop", "method.threshold=0"))


def _build_for(store_path, kind, num_labels):
    """LoRA-drop on the tiny model with a head and a context for task type ``kind``."""
    cfg = build_config(store_path, "method=lora_drop", "method.dropout=0.0", FOUR_LAYERS,
                       "method.threshold=0.3", "method.sample_fraction=0.5")
    model = load_model(cfg.model, cfg.quant, kind.head_size(num_labels), CPU,
                       problem_type=kind.problem_type).model
    torch.manual_seed(0)
    ctx = dataclasses.replace(method_context(cfg), task_type=kind)
    return METHODS.get("lora_drop").build(model, cfg.method, ctx)


def _choice_examples(n=24, choices=3, length=10):
    """Multiple-choice examples with padding at the end of some choices."""
    g = torch.Generator().manual_seed(4)
    out = []
    for i in range(n):
        mask = torch.ones(choices, length, dtype=torch.long)
        mask[i % choices, length - 1 - i % 4:] = 0
        out.append({"input_ids": torch.randint(5, 40, (choices, length), generator=g) * mask,
                    "attention_mask": mask, "labels": torch.tensor(i % choices)})
    return out


def _multi_label_examples(n=32, length=10):
    g = torch.Generator().manual_seed(5)
    sets = [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]]
    return [{"input_ids": torch.randint(5, 40, (length,), generator=g),
             "attention_mask": torch.ones(length, dtype=torch.long),
             "labels": torch.tensor(sets[i % 4])} for i in range(n)]


@pytest.mark.parametrize("kind,num_labels,examples", [
    (MultipleChoice(), 3, _choice_examples), (MultiLabel(), 3, _multi_label_examples)])
def test_probe_and_restructuring_work_on_every_task_type(store_path, kind, num_labels, examples):
    adapted = _build_for(store_path, kind, num_labels)
    batches = DataLoader(examples(), batch_size=8, shuffle=True, collate_fn=default_collate,
                         generator=torch.Generator().manual_seed(0))
    lora_count = adapted.count_parameters()[0]
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if p.requires_grad}
    before_training(adapted, batches)
    facts = adapted.details()["lora_drop"]
    assert facts["probe_steps"] > 0 and facts["probe_examples"] == len(batches.dataset) // 2
    assert facts["shared_adapter"] and adapted.count_parameters()[0] < lora_count
    # the kept adapters and the head are back at their initial values (the shared ones are new)
    after = dict(adapted.model.named_parameters())
    shared = {n for names in facts["shared_adapter"].values() for n in names}
    kept = [n for n in before if not any(n.startswith(s + ".") for s in shared)]
    assert any("classifier" in n for n in kept) and any(".adapter.lora_B" in n for n in kept)
    assert all(torch.equal(before[n], after[n]) for n in kept)
    optimizer = adapted.make_optimizer()
    adapted.model.train()
    loss = training_loss(adapted, kind, next(iter(batches)))
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()


def test_multiple_choice_importance_leaves_each_choices_padding_out(store_path):
    kind = MultipleChoice()
    adapted = _build_for(store_path, kind, 3)
    batches = DataLoader(_choice_examples(), batch_size=8, collate_fn=default_collate)
    inputs, masks = layer_inputs(adapted, batches, kind.model_inputs)
    assert all(m.min() == 0 for m in masks)  # there is padding to leave out
    scale = adapted.method.alpha / adapted.method.r
    scores = adapted.importance(batches, CPU)
    for name, layer in adapted.layers.items():
        a, b = layer.adapter.lora_A, layer.adapter.lora_B
        expected = unmasked = 0.0
        for x, mask in zip(inputs[name], masks):
            sq = (scale * x @ a.T @ b.T).pow(2).sum(-1)
            expected += float((sq * mask).sum() if sq.dim() == 2 else sq.sum())
            unmasked += float(sq.sum())
        assert scores[name] == pytest.approx(expected, rel=1e-4), name
        if inputs[name][0].dim() == 3:  # token-level layers: the padding did count before
            assert expected != pytest.approx(unmasked, rel=1e-4), name
