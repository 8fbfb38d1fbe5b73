"""Prompt tasks on causal language models: what the model is trained on (answer tokens only),
that the fast loss (left padding, logits of the answers' positions only) is the model's own loss,
that choice scoring is each candidate's log-likelihood, and that every method trains a causal LM
through the pipeline's own code, on a generation task and on a choice task."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness.run import pipeline
from harness.config import ConfigError
from harness.tasks.scoring.lm import IGNORE, answer_nll, option_scores
from harness.models.load import load_model
from harness.tasks import Split, load_task
from harness.tasks.choice import Choice
from harness.tasks.generation import Generation
from harness.tasks.answers import normalize
from harness.job.validation import validate
from tests.conftest import compose_config

CPU = torch.device("cpu")
LM = ["model=tiny_llama", "task=synthetic", "trainer=smoke"]
METHODS = ["lora", "dora", "qlora", "qdora", "adalora", "vera", "loraplus", "lorafa", "full",
           "delta_lora", "dylora", "lora_drop", "hyperlora", "double_lora"]


def lm_config(store_path, *overrides):
    return validate(compose_config([*LM, f"store.url={store_path}", *overrides]))


@pytest.fixture(scope="module")
def tiny_lm():
    cfg = validate(compose_config([*LM, "task.task_type=generation"]))
    torch.manual_seed(0)
    return load_model(cfg.model, cfg.quant, 0, CPU, causal_lm=True)


def _kind(cls, **settings):
    cfg = compose_config([*LM, f"task.task_type={cls.name}"]).task
    for key, value in settings.items():
        setattr(cfg, key, value)
    return cls().for_task(cfg)


def test_generation_trains_on_the_answer_and_its_end_token_only(tiny_lm):
    tok = tiny_lm.tokenizer
    kind = _kind(Generation, prompt_template="q: {text} a:")
    enc = kind.encode_examples(Split(["good film", "a very long and dull film indeed"], ["yes", "no"]),
                               tok, 64, "head")
    batch = kind.collator(tok)(enc.examples)
    for row, example, answer in zip(range(2), enc.examples, ["yes", "no"]):
        answer_ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        labels = batch["labels"][row]
        assert labels[labels != IGNORE].tolist() == answer_ids  # the answer and its end, nothing else
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, n - len(answer_ids):n].tolist() == answer_ids  # right padded
        assert batch["prompt_ids"][row, -example["n_prompt"]:].tolist() == example["input_ids"][:example["n_prompt"]]
        assert example["input_ids"][:example["n_prompt"]] == tok("q: " + ["good film", "a very long and dull film indeed"][row] + " a:")["input_ids"]
    assert batch["attention_mask"][0, -1] == 0 and batch["prompt_mask"][0, 0] == 0  # short row padded
    real = batch["attention_mask"][0].bool()
    assert batch["position_ids"][0][real].tolist() == list(range(int(real.sum())))


def test_long_prompts_are_cut_from_the_configured_side_never_the_answer(tiny_lm):
    tok = tiny_lm.tokenizer
    text = "start " + "middle " * 40 + "end"
    for side, kept, lost in (("head", "start", "end"), ("tail", "end", "start")):
        kind = _kind(Generation)
        enc = kind.encode_examples(Split([text, "short"], ["positive", "no"]), tok, 48, side)
        assert enc.n_truncated == 1
        first = enc.examples[0]
        assert len(first["input_ids"]) <= 48
        prompt = tok.decode(first["input_ids"][:first["n_prompt"]], skip_special_tokens=True)
        assert kept in prompt and lost not in prompt
        answer = first["input_ids"][first["n_prompt"]:]
        assert answer == tok("positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_the_chat_template_wraps_the_prompt_when_on_and_the_tokenizer_has_one(tiny_lm):
    tok = tiny_lm.tokenizer
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}[assistant] {% endif %}")
    try:
        on = _kind(Generation, system_prompt="be brief").render(tok, "hello")
        off = _kind(Generation, chat_template=False).render(tok, "hello")
    finally:
        tok.chat_template = None
    assert tok.decode(on) == tok.decode(tok("[system] be brief [user] hello [assistant]",
                                            add_special_tokens=False)["input_ids"])
    assert off == tok("hello")["input_ids"]


def test_the_fast_answer_loss_is_the_models_own_loss(tiny_lm):
    """answer_nll (left padding, logits_to_keep) against transformers' loss on each row alone."""
    model, tok = tiny_lm.model.eval(), tiny_lm.tokenizer
    kind = _kind(Generation)
    enc = kind.encode_examples(Split(["good film", "a much longer review of a dull film"],
                                     ["positive", "negative"]), tok, 64, "head")
    batch = kind.collator(tok)(enc.examples)
    with torch.no_grad():
        nll, mask = answer_nll(model, kind.model_inputs(batch), batch["labels"])
        for row, example in enumerate(enc.examples):
            ids = torch.tensor([example["input_ids"]])
            labels = ids.clone()
            labels[0, :example["n_prompt"]] = IGNORE
            own = model(input_ids=ids, labels=labels).loss
            ours = nll[row].sum() / mask[row].sum()
            assert torch.allclose(ours, own, atol=1e-5), (ours, own)


def test_choice_scores_each_candidate_by_its_log_likelihood(tiny_lm):
    model, tok = tiny_lm.model.eval(), tiny_lm.tokenizer
    kind = _kind(Choice)
    kind.candidates = ["yes", "no", "maybe so"]
    enc = kind.encode_examples(Split(["is it good", "a film"], [0, 2]), tok, 64, "head")
    batch = kind.collator(tok)(enc.examples)
    scores = option_scores(model, batch, kind.model_inputs, kind.pad_id(tok))
    for row, example in enumerate(enc.examples):
        prompt = example["input_ids"][:example["n_prompt"]]
        for option, score in zip(example["options"], scores[row]):
            ids = torch.tensor([prompt + option])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            want = sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(option))
            assert math.isclose(score, want, abs_tol=1e-4)
    # the right answer is what the model is trained on
    assert enc.examples[1]["input_ids"][enc.examples[1]["n_prompt"]:] == enc.examples[1]["options"][2]


def test_generation_metrics_exact_normalized_and_classes():
    kind = Generation()
    kind.answers = ["negative", "positive"]
    m = kind.metrics(["Positive.", "negative", "meh"], ["positive", "negative", "negative"], 2)
    assert m["accuracy"] == m["exact_match"] == pytest.approx(1 / 3)
    assert m["normalized_match"] == pytest.approx(2 / 3)
    assert kind.prediction_ids(["positive", "Positive.", "negative"]) == [1, 2, 0]  # 2: other
    assert normalize("  The  END!! ") == "the end"
    assert kind.majority_prediction(["a", "b", "b"]) == "b"


def test_prompt_tasks_are_refused_on_a_classifier_and_paged_optimizers_on_cpu(store_path):
    with pytest.raises(ConfigError, match="needs a causal language model"):
        validate(compose_config(["model=tiny_bert", "task=synthetic", "task.task_type=generation"]))
    with pytest.raises(ConfigError, match="paged_adamw_8bit .* needs a GPU"):
        lm_config(store_path, "trainer.device=cpu", "trainer.optimizer=paged_adamw_8bit")
    with pytest.raises(ConfigError, match="brings its own optimizer"):
        lm_config(store_path, "method=lorafa", "trainer.optimizer=adamw_8bit")
    with pytest.raises(ConfigError, match="float16 needs a GPU"):
        lm_config(store_path, "trainer.device=cpu", "model.dtype=float16")


def test_label_words_must_name_labels_of_the_data(store_path):
    from harness.tasks import TaskDataError

    cfg = lm_config(store_path, "task.task_type=choice", "+task.label_words.good=yes")
    with pytest.raises(TaskDataError, match="label_words has label"):
        load_task(cfg.task)


def _train(store_path, *overrides):
    cfg = lm_config(store_path, *overrides)
    s = pipeline.setup(cfg, CPU)
    before = {n: p.detach().clone() for n, p in s.adapted.model.named_parameters()}
    trained = pipeline.fit(s, cfg, None)
    after = dict(s.adapted.model.named_parameters())
    return s, trained, before, after


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_a_causal_lm_on_a_generation_task(store_path, method):
    s, trained, before, after = _train(store_path, f"method={method}", "task.task_type=generation")
    assert s.loaded.model.__class__.__name__.endswith("ForCausalLM")
    assert not any("score" in n for n in after)  # no classification head
    trainable = {n for n, p in after.items() if p.requires_grad}
    moved = {n for n in trainable if not torch.equal(before[n], after[n].detach())}
    assert moved, "no trained tensor changed"
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and n in before
                    and p.dtype.is_floating_point and not torch.equal(before[n], p.detach())]
    if method == "delta_lora":  # its paper's mechanism: W moves by the change of A·B, untrained
        assert frozen_moved and all(n.endswith("base_layer.weight") or "base" in n for n in frozen_moved)
        assert not any("lm_head" in n or "embed_tokens" in n for n in frozen_moved)
    elif method != "full":
        assert not any("lm_head" in n or "embed_tokens" in n for n in trainable)
        assert not frozen_moved  # the base stays where it was
    else:
        assert any("embed_tokens" in n for n in moved)
    val = {c["metric"]: c["value"] for c in trained.curves if c["split"] == "validation"}
    assert {"accuracy", "normalized_match", "eval_loss", "perplexity"} <= set(val)
    assert math.isclose(val["perplexity"], math.exp(val["eval_loss"]), rel_tol=1e-9)


def test_a_choice_run_records_choice_metrics_and_the_majority(run_tiny):
    row = run_tiny("model=tiny_llama", "task.task_type=choice", "method=lora")
    assert row["status"] == "finished", row.get("error")
    assert 0 <= row["accuracy"] <= 1 and row["perplexity"] > 1
    assert row["majority_accuracy"] is not None and row["gen_tokens_per_s"] > 0
    assert row.get("normalized_match") is None  # a generation metric


def test_a_generation_run_records_generation_speed_and_keeps_predictions(run_tiny, store_path):
    from harness.results import open_store

    row = run_tiny("model=tiny_llama", "task.task_type=generation", "method=lora")
    assert row["status"] == "finished", row.get("error")
    assert row["gen_tokens_per_s"] > 0 and row["gen_ttft_ms"] > 0
    assert 0 <= row["normalized_match"] <= 1 and row["perplexity"] > 1
    kept = open_store(str(store_path), create=False).predictions()[row["run_id"]]
    assert len(kept["labels"]) == row["n_test"]


def _fake_hub_model(cache: Path, repo: str, commit: str, spec: dict) -> None:
    """A tiny random causal LM stored where the hub's cache keeps ``repo`` at ``commit``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.models.load import _tiny_tokenizer

    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    tokenizer = _tiny_tokenizer()
    spec = dict(spec)
    config = AutoConfig.for_model(spec.pop("model_type"), vocab_size=len(tokenizer), pad_token_id=0,
                                  eos_token_id=tokenizer.eos_token_id, **spec)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(snapshot, safe_serialization=True)
    tokenizer.save_pretrained(snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


def test_a_hub_causal_lm_loads_from_the_hubs_cache_layout_by_its_id(tmp_path):
    """model=qwen names a hub id; with the hub's cache holding it, the run loads it offline,
    records hub:<id>@<commit>, and trains it on a prompt task."""
    import os
    import subprocess
    import sys

    from harness.results import open_store

    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_model(cache, "Qwen/Qwen2.5-0.5B-Instruct", commit,
                    {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64,
                     "max_position_embeddings": 256, "tie_word_embeddings": True})
    store = tmp_path / "r.sqlite"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "harness", "model=qwen", "task=synthetic",
                          "task.task_type=generation", "trainer=smoke", f"store.url={store}",
                          f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = open_store(str(store), create=False).runs().iloc[0]
    assert row["status"] == "finished", row["error"]
    assert row["model_fingerprint"] == f"hub:Qwen/Qwen2.5-0.5B-Instruct@{commit}"
    assert row["trainable_params"] > 0 and 0 <= row["normalized_match"] <= 1


@pytest.mark.parametrize("kind", ["generation", "choice"])
def test_a_users_file_with_its_own_columns_and_dozens_of_answers_runs_as_both_types(
        run_tiny, tmp_path, kind):
    """The README's recipe on a file the harness has never seen: 41 distinct answers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_prompt_file", Path(__file__).resolve().parents[1] / "experiments" / "make_prompt_file.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    path = tmp_path / "sums.jsonl"
    maker.main(str(path))
    row = run_tiny("model=tiny_llama", "task=jsonl", f"task.data_path={path}",
                   "task.text_column=question", "task.label_column=answer", f"task.task_type={kind}",
                   "task.train_size=48", "task.val_size=8", "task.test_size=16")
    assert row["status"] == "finished", row.get("error")
    details = __import__("json").loads(row["details_json"])
    assert details["task_type"] == kind and len(details["label_names"]) == 41
    assert 0 <= row["accuracy"] <= 1 and row["majority_accuracy"] is not None
    assert row["perplexity"] > 1


def test_gradient_checkpointing_is_applied_to_the_run(store_path):
    cfg = lm_config(store_path, "method=lora", "task.task_type=generation",
                    "trainer.gradient_checkpointing=true")
    s = pipeline.setup(cfg, CPU)
    assert s.loaded.model.is_gradient_checkpointing
    pipeline.fit(s, cfg, None)
