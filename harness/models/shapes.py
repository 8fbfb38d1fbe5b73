"""The sizes of the layers a run adapts, read from the model's config alone, and peft's rules on them.

Some tuners need the adapted Linear layers' sizes to fit their settings (a block size that divides
them, a budget that fits in them); peft checks that only when it builds the model. Preflight
checks it here first (:meth:`harness.methods.peft_tuner.PeftMethodConfig.check_layers`), without
importing torch, transformers or peft: the (in, out) features of each targeted layer come from
the model's transformers config (``model.tiny`` for a tiny model, else the ``config.json`` of its
folder, of a ``package:`` folder, or of a hub id already in the local hub cache; a GGUF file's
own metadata). A model whose config is not on disk, or of a ``model_type`` not known here, gives
None: nothing is checked, and peft checks when it builds, as before.
"""
from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path

from harness.errors import ConfigError

BERT = ("bert",)  # query/key/value/dense: attention, intermediate and output, the pooler
DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")  # q/k/v/o, gate/up/down_proj
# transformers' defaults for the keys a tiny config may leave out (BertConfig, LlamaConfig)
DEFAULTS = {"bert": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12},
            "llama": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                      "num_attention_heads": 32}}


def linear_layers(config: dict) -> dict[str, tuple[int, int]] | None:
    """Every Linear layer of the model's body by module name -> (in_features, out_features), as
    transformers builds it from ``config``; None for a model type not known here."""
    kind = config.get("model_type")
    c = {**DEFAULTS.get(kind, {}), **{k: v for k, v in config.items() if v is not None}}
    try:
        h, inter, n = int(c["hidden_size"]), int(c["intermediate_size"]), int(c["num_hidden_layers"])
        if kind in BERT:
            layer = {"attention.self.query": (h, h), "attention.self.key": (h, h),
                     "attention.self.value": (h, h), "attention.output.dense": (h, h),
                     "intermediate.dense": (h, inter), "output.dense": (inter, h)}
            found = {f"bert.encoder.layer.{i}.{k}": v for i in range(n) for k, v in layer.items()}
            return {**found, "bert.pooler.dense": (h, h)}
        if kind in DECODERS:
            heads = int(c["num_attention_heads"])
            kv, dim = int(c.get("num_key_value_heads", heads)), int(c.get("head_dim", h // heads))
            layer = {"self_attn.q_proj": (h, heads * dim), "self_attn.k_proj": (h, kv * dim),
                     "self_attn.v_proj": (h, kv * dim), "self_attn.o_proj": (heads * dim, h),
                     "mlp.gate_proj": (h, inter), "mlp.up_proj": (h, inter), "mlp.down_proj": (inter, h)}
            return {f"model.layers.{i}.{k}": v for i in range(n) for k, v in layer.items()}
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None


def target_shapes(model_cfg, targets) -> dict[str, set[tuple[int, int]]] | None:
    """For each target module name, the (in, out) features of the Linear layers it names (peft's
    matching: the module's name, or a suffix after a dot); None when the model's config is not
    on disk or its type is not known here."""
    config = dict(model_cfg.tiny) if model_cfg.tiny else model_config(model_cfg.source,
                                                                       getattr(model_cfg, "revision", None))
    layers = linear_layers(config) if config else None
    if layers is None:
        return None
    return {t: {shape for name, shape in layers.items() if name == t or name.endswith("." + t)}
            for t in targets}


def model_config(source: str, revision: str | None = None) -> dict | None:
    """The transformers config of a model source, resolved as harness/models/load.py does, or None."""
    from harness.models.sources import resolve_source

    try:
        path = Path(resolve_source(source)).expanduser()
    except FileNotFoundError:
        return None  # preflight's file check says so in one line
    if path.suffix == ".gguf" and path.is_file():
        return _gguf_config(str(path), path.stat().st_mtime_ns)
    if path.is_dir():
        return _json(path / "config.json")
    if source.startswith(("/", "./", "../", "~")):
        return None
    try:  # a hub id: only a config already in the local hub cache (nothing is downloaded)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - no cache, no answer: peft checks when it builds
        return None
    return _json(Path(cached)) if isinstance(cached, str) else None


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# GGUF metadata value types -> struct format (8: string, 9: array)
_GGUF = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


@lru_cache(maxsize=8)
def _gguf_config(path: str, mtime: int) -> dict | None:
    """A llama-style config from a GGUF file's metadata (what transformers maps it from). Read
    here rather than with ``gguf.GGUFReader``, which parses every tensor's header and the token
    lists first (about 2-5 s for SmolLM2-135M): preflight needs seven keys near the file's start."""
    wanted = {"general.architecture", "embedding_length", "feed_forward_length", "block_count",
              "attention.head_count", "attention.head_count_kv", "attention.key_length",
              "context_length"}
    found: dict = {}
    try:
        with open(path, "rb") as fh:
            def read(fmt):
                return struct.unpack("<" + fmt, fh.read(struct.calcsize(fmt)))[0]

            def string():
                return fh.read(read("Q")).decode("utf-8", "replace")

            def value(kind):
                if kind == 8:
                    return string()
                if kind == 9:
                    inner, n = read("I"), read("Q")
                    if inner in _GGUF:  # skipped whole: a token list is not needed
                        fh.seek(n * struct.calcsize(_GGUF[inner]), 1)
                    else:  # strings or nested arrays: read past them one by one
                        for _ in range(n):
                            value(inner)
                    return None
                return read(_GGUF[kind])

            if fh.read(4) != b"GGUF" or read("I") < 2:
                return None
            _, count = read("Q"), read("Q")
            for _ in range(count):
                key, kind = string(), read("I")
                item = value(kind)
                short = key.split(".", 1)[1] if not key.startswith("general.") else key
                if short in wanted:
                    found[short] = item
                if len(found) == len(wanted):
                    break
    except (OSError, struct.error, KeyError):
        return None
    arch = found.get("general.architecture")
    if arch not in DECODERS or "embedding_length" not in found:
        return None
    config = {"model_type": arch, "hidden_size": found["embedding_length"],
              "intermediate_size": found.get("feed_forward_length"),
              "num_hidden_layers": found.get("block_count"),
              "num_attention_heads": found.get("attention.head_count"),
              "num_key_value_heads": found.get("attention.head_count_kv")}
    if "attention.key_length" in found:
        config["head_dim"] = found["attention.key_length"]
    if "context_length" in found:
        config["max_position_embeddings"] = found["context_length"]
    return config


# --- peft's rules on layer sizes -------------------------------------------------------------
# kind -> (what the value must do, test(value, in, out, factor)); factor: BOFT's butterfly factor
RULES = {
    "in_out": ("must divide every adapted layer's in and out features",
               lambda v, i, o, f: i % v == 0 and o % v == 0),
    "out": ("must divide every adapted layer's out features", lambda v, i, o, f: o % v == 0),
    "out_even": ("must be even and divide every adapted layer's out features",
                 lambda v, i, o, f: v % 2 == 0 and o % v == 0),
    "in": ("must divide every adapted layer's in features (peft would change it to a nearby divisor)",
           lambda v, i, o, f: i % v == 0),
    "boft_size": ("must divide every adapted layer's in features",
                  lambda v, i, o, f: i % (v * 2 ** (f - 1)) == 0 and (f == 1 or v % 2 == 0)),
    "boft_num": ("must divide every adapted layer's in features",
                 lambda v, i, o, f: i % v == 0 and (f == 1 or (v % 2 ** (f - 1) == 0 and (i // v) % 2 == 0))),
    "in_times_out": ("must be at most in*out of every adapted layer", lambda v, i, o, f: v <= i * o),
    "shira": ("must keep r*(in+out) <= in*out on every adapted layer", lambda v, i, o, f: v * (i + o) <= i * o),
    "at_most_in": ("must be at most every adapted layer's in features", lambda v, i, o, f: v <= i),
    "at_most_min": ("must be at most every adapted layer's smaller size, min(in, out)",
                    lambda v, i, o, f: v <= min(i, o)),
}
_BOUNDS = {"in_times_out": lambda i, o: i * o, "shira": lambda i, o: i * o // (i + o),
           "at_most_in": lambda i, o: i, "at_most_min": lambda i, o: min(i, o)}


def describe(kind: str, factor: int = 1) -> str:
    """What a value of this kind must do, in words (BOFT's rules grow with its butterfly factor)."""
    if kind == "boft_size" and factor > 1:
        return (f"times 2^{factor - 1} (boft_n_butterfly_factor={factor}) must divide every adapted "
                "layer's in features, and it must be even")
    if kind == "boft_num" and factor > 1:
        return (f"must divide every adapted layer's in features, be a multiple of 2^{factor - 1} "
                f"(boft_n_butterfly_factor={factor}) and leave an even block size, in/boft_block_num")
    return RULES[kind][0]


def allowed(kind: str, shapes: set[tuple[int, int]], factor: int = 1) -> str:
    """The values that fit every layer of ``shapes``, in words."""
    if kind in _BOUNDS:
        top = min(_BOUNDS[kind](i, o) for i, o in shapes)
        return f"1 to {top}" if top >= 1 else "none"
    top = max(min(i for i, _ in shapes), min(o for _, o in shapes))
    fits = [v for v in range(1, top + 1) if all(RULES[kind][1](v, i, o, factor) for i, o in shapes)]
    return ", ".join(map(str, fits)) or "none"


def broken_layer(kind: str, value: int, shapes: dict[str, set[tuple[int, int]]],
                 factor: int = 1) -> tuple[str, int, int] | None:
    """The first (target, in, out) that ``value`` does not fit; None when it fits all."""
    test = RULES[kind][1]
    for target, found in shapes.items():
        for i, o in sorted(found):
            if not test(value, i, o, factor):
                return target, i, o
    return None


def check_rules(method, rules, model_cfg, targets) -> None:
    """A peft method config's layer rules (``PeftMethodConfig.LAYER_RULES``: option, peft's default,
    kind, the (option, value) it applies under) against the layers ``targets`` name; raises
    ConfigError in one line naming the option, the layer and the values that fit every layer."""
    o = method.options
    if any(o.get(k) for k in ("exclude_modules", "layers_to_transform", "layers_pattern")):
        return  # fewer layers than the targets name: peft checks when it builds
    found = {t: s for t, s in (target_shapes(model_cfg, targets) or {}).items() if s}
    factor = o.get("boft_n_butterfly_factor", 1)
    name = f"method={method.name}"
    for option, default, kind, when in rules:
        ranked = option == method.rank_option
        value, key = (method.r, "method.r") if ranked else (o.get(option, default), f"method.options.{option}")
        if (not found or (when and o.get(when[0]) != when[1]) or o.get(f"{option}_pattern")
                or o.get("proportional_parameters") or (value == 0 and kind in ("in", "boft_size", "boft_num"))):
            continue  # 0: OFT's r or block size, BOFT's block size or count, left to the other
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name}: {key} must be a positive integer, got {value!r}")
        if kind.startswith("boft") and (not isinstance(factor, int) or factor < 1):
            raise ConfigError(f"{name}: method.options.boft_n_butterfly_factor must be a positive integer, "
                              f"got {factor!r}")
        broken = broken_layer(kind, value, found, factor)
        if broken:
            target, i, out = broken
            fits = allowed(kind, set().union(*found.values()), factor)
            if method.peft_type == "GRALORA":  # gralora_k must divide r too (peft's GraloraConfig)
                fits = ", ".join(v for v in fits.split(", ") if v.isdigit() and method.r % int(v) == 0) or "none"
            raise ConfigError(f"{name}: {key}={value} {describe(kind, factor)}, and {target} of "
                              f"model={model_cfg.name} has {i} in, {out} out features; allowed: {fits}")
