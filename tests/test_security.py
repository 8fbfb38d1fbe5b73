"""Loading is safe by default: no remote code unless asked, safetensors only, nothing unpickled."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from harness.job.validation import validate
from tests.method_helpers import build_from
from harness.models.load import load_model
from harness.paths import conf_dir
from tests.conftest import compose_config, tiny_config

HARNESS = Path(__file__).resolve().parents[1] / "harness"


@pytest.mark.parametrize("model", sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml")))
def test_no_model_config_turns_remote_code_on(model):
    assert validate(compose_config([f"model={model}"])).model.trust_remote_code is False


@pytest.mark.parametrize("flag", [False, True])
def test_trust_remote_code_reaches_the_loaders_only_as_configured(store_path, monkeypatch, flag):
    import transformers

    seen = []
    for cls in (transformers.AutoModelForSequenceClassification, transformers.AutoTokenizer):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append(kwargs)
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    cfg = validate(tiny_config(store_path, f"model.trust_remote_code={str(flag).lower()}"))
    load_model(cfg.model, cfg.quant, 2, torch.device("cpu"))
    assert len(seen) == 2 and all(kw["trust_remote_code"] is flag for kw in seen)
    assert any(kw.get("use_safetensors") is True for kw in seen)


def test_adapters_are_saved_as_safetensors_only(store_path, tmp_path):
    from safetensors import safe_open

    cfg = validate(tiny_config(store_path, "method=lora"))
    loaded = load_model(cfg.model, cfg.quant, 2, torch.device("cpu"))
    adapted = build_from(cfg, loaded.model)
    size = adapted.save(tmp_path / "adapter")
    files = [p for p in (tmp_path / "adapter").rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert weights and size == sum(p.stat().st_size for p in weights)
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    with safe_open(str(weights[0]), "pt") as f:
        assert any("lora_A" in k for k in f.keys())


PICKLE_USES = re.compile(r"\bimport pickle\b|\bpickle\.loads?\(|torch\.load\(|read_pickle\(|"
                         r"\bjoblib\.load\(|\bdill\b|use_safetensors\s*=\s*False|safe_serialization\s*=\s*False")


def test_nothing_in_the_harness_unpickles_or_saves_unsafe_weights():
    hits = [f"{p.relative_to(HARNESS)}:{i}: {line.strip()}"
            for p in HARNESS.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
            if PICKLE_USES.search(line)]
    assert hits == []
