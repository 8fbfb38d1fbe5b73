"""Load a base model and its tokenizer, optionally in 4-bit: with a sequence-classification head,
or as a causal language model (prompt tasks).

Every model goes through ``from_pretrained`` from a folder, tiny random test models included
(they are built once and saved as safetensors), so tests exercise the same loading and
quantization path as real runs. Loading is safe by default: safetensors only, and no remote
code unless the model config turns it on.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          BitsAndBytesConfig)

from harness.models.sources import resolve_source
from harness.paths import cache_dir

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    source: str  # resolved location, for provenance


def gguf_to_safetensors(gguf_path: str) -> str:
    """De-quantize a GGUF checkpoint once into a cached safetensors folder; return the folder.

    transformers reads GGUF by de-quantizing it to full precision, and a model loaded that way
    cannot be saved or re-quantized with bitsandbytes. Writing its weights, config and tokenizer
    to a plain folder once makes every later load (4-bit included) a normal safetensors load.
    """
    from safetensors.torch import save_file

    path = Path(gguf_path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    folder = cache_dir() / "gguf" / f"{path.stem}-{digest.hexdigest()[:16]}"
    if (folder / "model.safetensors").is_file():
        return str(folder)
    kwargs = {"gguf_file": path.name, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kwargs)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    if hasattr(model.config, "quantization_config"):  # the GGUF marker: the copy is plain fp32
        del model.config.quantization_config
    model.config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # The body, and the output layer unless it is tied to the embeddings (then it is rebuilt).
    body = {f"model.{k}": v.contiguous() for k, v in model.model.state_dict().items()}
    if not getattr(model.config, "tie_word_embeddings", False):
        body["lm_head.weight"] = model.lm_head.weight.detach().contiguous()
    save_file(body, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return _publish(tmp, folder)


def _publish(tmp: Path, folder: Path) -> str:
    """Move a model written to ``tmp`` into the cache ``folder`` in one rename; a broken leftover
    there is replaced, and another process's identical copy, made first, is kept."""
    if folder.is_dir() and not (folder / "config.json").is_file():  # a broken leftover: replaced
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)


def keep_4bit_weights_trainable_on_cpu(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference on the first eval pass.

    The repacked layout takes a path whose in-place bias add fails under autograd, so training
    after a validation pass would crash; weights stay in the training layout instead.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _tiny_tokenizer():
    """A character-level WordPiece tokenizer: every lowercase text has a tokenization."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece()  # "##x" pieces join when decoded (generated answers)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   eos_token="[SEP]")


def build_tiny(spec: dict) -> str:
    """Build (once) a random-weight model from a transformers config dict; return its folder."""
    from transformers import AutoConfig

    spec = dict(spec)
    key = hashlib.sha256((json.dumps(spec, sort_keys=True) + "|v2").encode()).hexdigest()[:16]
    folder = cache_dir() / "tiny" / key
    if (folder / "config.json").is_file():
        return str(folder)
    tokenizer = _tiny_tokenizer()
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=0, **spec)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, folder)


def bnb_config(quant_cfg, skip_modules: list[str]) -> BitsAndBytesConfig | None:
    if not quant_cfg.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=str(quant_cfg.quant_type.value),
        bnb_4bit_use_double_quant=quant_cfg.double_quant,
        bnb_4bit_compute_dtype=_DTYPES[quant_cfg.compute_dtype.value],
        llm_int8_skip_modules=list(skip_modules),
    )


def empty_model(auto, path: str, kwargs: dict, revision: dict) -> torch.nn.Module:
    """The model ``auto.from_pretrained(path, **kwargs)`` would load, on the meta device, from its
    config alone."""
    from transformers import AutoConfig

    options = {k: kwargs[k] for k in ("num_labels", "problem_type") if k in kwargs}
    config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs["trust_remote_code"], **options, **revision)
    with torch.device("meta"):
        return auto.from_config(config, dtype=kwargs["dtype"], trust_remote_code=kwargs["trust_remote_code"])


def model_folder(model_cfg) -> str:
    """The folder (or hub id) the model and its tokenizer load from: a tiny model built once, a
    GGUF file converted once, else ``model.source`` resolved."""
    path = build_tiny(model_cfg.tiny) if model_cfg.tiny else resolve_source(model_cfg.source)
    return gguf_to_safetensors(path) if path.endswith(".gguf") else path


def load_tokenizer(model_cfg, path: str | None = None):
    """The model's tokenizer as a run uses it (a decoder's missing pad token is its end token), so
    that what the preflight tokenizes is what the run's token cache finds."""
    revision = {"revision": model_cfg.revision} if getattr(model_cfg, "revision", None) else {}
    tokenizer = AutoTokenizer.from_pretrained(path or model_folder(model_cfg),
                                              trust_remote_code=model_cfg.trust_remote_code, **revision)
    if tokenizer.pad_token is None:  # decoder tokenizers often have none
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_cfg, quant_cfg, num_labels: int, device: torch.device,
               problem_type: str | None = None, causal_lm: bool = False, empty: bool = False) -> LoadedModel:
    """``num_labels`` outputs on a sequence-classification head; ``problem_type`` as transformers
    names it (multi-label heads need ``multi_label_classification``). ``causal_lm``: the model
    with its own output layer instead (``AutoModelForCausalLM``), which stays out of 4-bit.
    ``empty``: the same model built from its config on the meta device, no weight read (an FSDP
    process that receives its shards from another, :mod:`harness.run.fsdp`)."""
    path = model_folder(model_cfg)
    kwargs: dict = {"trust_remote_code": model_cfg.trust_remote_code, "use_safetensors": True,
                    "dtype": _DTYPES[model_cfg.dtype.value]}
    if not causal_lm:  # a saved head with another number of labels is replaced by a new one
        kwargs.update(num_labels=num_labels, ignore_mismatched_sizes=True)
    if problem_type and not causal_lm:
        kwargs["problem_type"] = problem_type
    skip = list(model_cfg.quant_skip_modules) + (["lm_head"] if causal_lm else [])
    quant = bnb_config(quant_cfg, skip)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    # A hub id loads at model.revision (a commit, tag or branch); the run identity records it.
    revision = {"revision": model_cfg.revision} if getattr(model_cfg, "revision", None) else {}
    tokenizer = load_tokenizer(model_cfg, path)
    auto = AutoModelForCausalLM if causal_lm else AutoModelForSequenceClassification
    if empty:
        if quant is not None:
            raise ValueError("a 4-bit model cannot be built without its weights")
        model = empty_model(auto, path, kwargs, revision)
    else:
        model = auto.from_pretrained(path, **kwargs, **revision)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if quant is None and not empty:
        model.to(device)
    elif device.type == "cpu":
        keep_4bit_weights_trainable_on_cpu(model)
    return LoadedModel(model, tokenizer, path)

