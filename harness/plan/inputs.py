"""What the planner refuses before it builds anything, each in one line naming the field and what
it may be (a :class:`~harness.errors.ConfigError`; ``python -m harness.plan`` exits 2).

The planner builds the model from its ``config.json`` on the meta device and runs it at the
planned batch and length, so a config it cannot build from answered with a traceback from deep
in transformers or PyTorch, and absurd sizes with no answer at all: a million layers take hours to
build even without memory, and a batch times a length squared past 2**62 elements overflows
PyTorch's sizes. So, before any model is built:

- the model's source must be a model folder with a ``config.json`` (a JSON object, not empty, not
  a list), a ``.gguf`` file, or a hub id; a ``model_type`` transformers knows;
- its sizes (:data:`SIZES`) whole numbers from 1 to a bound well past the largest published
  model, and the key-value heads a divisor of the attention heads;
- ``trainer.batch_size`` and ``task.max_length`` at most :data:`MAX_BATCH` and
  :data:`MAX_LENGTH`, the length within the model's positions (as a run refuses it), and one
  attention layer's scores (batch x heads x length**2) at most 2**62 elements.

A hub config is checked again once transformers has read it (:func:`read_config`), and an error
transformers or PyTorch raises while building the model is one line too (:func:`building`).
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

from harness.errors import ConfigError, first_line

# Sizes a config may give, and the largest accepted: 4 to 30 times the largest published model's
# (405B: 126 layers, hidden 16,384, 128 heads; vocabularies up to 262,144; 10M-token contexts).
# Layers bound the time: the meta model of 512 layers of width 16,384 takes ~30 s to build and run.
SIZES = {
    "hidden_size": 2**17, "num_hidden_layers": 512, "num_attention_heads": 4096,
    "num_key_value_heads": 4096, "intermediate_size": 2**20, "vocab_size": 2**23,
    "max_position_embeddings": 2**27, "head_dim": 2**14,
    "n_embd": 2**17, "n_layer": 512, "n_head": 4096, "n_inner": 2**20, "n_positions": 2**27,
    "n_ctx": 2**27, "d_model": 2**17, "num_layers": 512, "num_heads": 4096, "d_ff": 2**20,
    "d_kv": 2**14, "ffn_dim": 2**20, "encoder_layers": 512, "decoder_layers": 512,
}
MAX_BATCH = 2**16  # trainer.batch_size
MAX_LENGTH = 2**20  # task.max_length, in tokens
MAX_ELEMENTS = 2**62  # one attention layer's scores on the meta device (PyTorch indexes in int64)
MAX_CONFIG_BYTES = 16 * 2**20  # a config.json larger than this is not a model's config


def _where(cfg) -> str:
    return "model.tiny" if cfg.model.tiny else f"model.source={cfg.model.source}"


def _read_json(path: Path, where: str) -> dict:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {path} is {path.stat().st_size:,} bytes, not a model's config.json "
                          f"(allowed: a JSON object of at most {MAX_CONFIG_BYTES:,} bytes)")
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ConfigError(f"{where}: {path} is empty; allowed: a model's config, a JSON object "
                          f"with model_type and its sizes")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {path} is not valid JSON ({first_line(exc)})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: {path} holds a JSON {type(config).__name__}; allowed: a JSON "
                          f"object with model_type and its sizes")
    return config


def raw_config(cfg) -> dict | None:
    """The model's config as the run will read it, None for a hub id not in the local cache
    (checked once transformers reads it); ConfigError for a source no model can be built from."""
    from harness.models.shapes import model_config
    from harness.models.sources import resolve_source

    where = _where(cfg)
    if cfg.model.tiny:
        return dict(cfg.model.tiny)
    try:
        path = Path(resolve_source(cfg.model.source)).expanduser()
    except FileNotFoundError as exc:
        raise ConfigError(first_line(exc)) from None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{where}: {path} is a folder without config.json; allowed: a model "
                              f"folder (config.json, as from save_pretrained), a .gguf file or a hub id")
        return _read_json(path / "config.json", where)
    if path.is_file():
        if path.suffix == ".json":
            return _read_json(path, where)
        if path.suffix != ".gguf":
            raise ConfigError(f"{where}: {path} is a file, not a model; allowed: a model folder "
                              f"with config.json, a .gguf file or a hub id")
    elif str(cfg.model.source).startswith(("/", "./", "../", "~")):
        raise ConfigError(f"{where}: no such folder or file; allowed: a model folder with "
                          f"config.json, a .gguf file or a hub id")
    return model_config(str(cfg.model.source), getattr(cfg.model, "revision", None))


def check_config(config: dict, where: str, typed: bool = True) -> None:
    """ConfigError unless ``config`` names a model type transformers knows (``typed``) and its
    sizes are whole numbers within :data:`SIZES`; its ``text_config`` is checked the same way."""
    if typed:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        kind = config.get("model_type")
        if not isinstance(kind, str) or kind not in CONFIG_MAPPING_NAMES:
            import difflib

            close = difflib.get_close_matches(kind, list(CONFIG_MAPPING_NAMES), n=3, cutoff=0.6) \
                if isinstance(kind, str) else []
            raise ConfigError(
                f"{where}: model_type must be one of the {len(CONFIG_MAPPING_NAMES)} model types this "
                f"transformers knows (e.g. bert, gpt2, llama, mistral, qwen2"
                + (f"; closest: {', '.join(close)}" if close else "") + "), got "
                + ("none" if kind is None else repr(kind)))
    for key, top in SIZES.items():
        value = config.get(key)  # one per layer in a few models (a list): each checked
        if value is not None and not all(_whole(v, top) for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"{where}: {key} must be a whole number from 1 to {top:,}, got {value!r}")
    heads, groups = config.get("num_attention_heads"), config.get("num_key_value_heads")
    if isinstance(heads, int) and isinstance(groups, int) and heads % groups:
        raise ConfigError(f"{where}: num_key_value_heads must divide num_attention_heads ({heads}), "
                          f"got {groups}")
    if isinstance(config.get("text_config"), dict):
        check_config(config["text_config"], f"{where} (text_config)", typed=False)


def _whole(value, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top


def check_settings(cfg, config: dict | None) -> None:
    """ConfigError unless the batch and length are plannable for this model (see the module)."""
    from harness.sweep.limits import positions

    batch, length = cfg.trainer.batch_size, cfg.task.max_length
    if not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"trainer.batch_size must be a whole number from 1 to {MAX_BATCH:,}, got {batch}")
    found = positions(cfg.model) if config is not None else None
    top, why = (found[0], f" (model {cfg.model.name} has {found[1]}={found[0]})") if found else (MAX_LENGTH, "")
    if not 1 <= length <= min(top, MAX_LENGTH):
        raise ConfigError(f"task.max_length must be a whole number from 1 to {min(top, MAX_LENGTH):,}{why}, "
                          f"got {length:,}")
    text = (config or {}).get("text_config") if isinstance((config or {}).get("text_config"), dict) else config
    heads = (text or {}).get("num_attention_heads") or (text or {}).get("n_head") or 1
    heads = max(heads) if isinstance(heads, list) else int(heads)
    if batch * heads * length ** 2 > MAX_ELEMENTS:
        raise ConfigError(f"trainer.batch_size x attention heads x task.max_length**2 = {batch} x {heads} x "
                          f"{length:,}**2 is more than 2**62 elements, past what PyTorch can index; "
                          f"allowed: a smaller batch or length")


def check_plannable(cfg) -> None:
    """Every check of this module that needs no model: before the first model is built."""
    config = raw_config(cfg)
    if config is not None:
        check_config(config, _where(cfg), typed="model_type" in config or not cfg.model.tiny)
    check_settings(cfg, config)


def read_config(cfg, source: str, **kwargs):
    """``AutoConfig.from_pretrained(source, **kwargs)``, its failure and its sizes in one line."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{_where(cfg)}: transformers cannot read its config: {first_line(exc)}") from None
    check_config(config.to_dict(), _where(cfg))
    return config


@contextmanager
def building(cfg):
    """An error transformers or PyTorch raises while building the model from its config, as one
    line (a config this check let through, or a model class that refuses its sizes)."""
    try:
        yield
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError, AssertionError) as exc:
        raise ConfigError(f"{_where(cfg)}: the model cannot be built from its config: {first_line(exc)}") from None


def budget(text: str) -> float:
    """``--budget-gib``: a positive, finite number of GiB."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--budget-gib must be a positive number of GiB (e.g. 24), got {text}")
    return value
