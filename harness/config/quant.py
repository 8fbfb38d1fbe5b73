"""The ``quant`` config group: whether the base model is loaded in 4 bits, and how."""
from __future__ import annotations

from dataclasses import dataclass

from harness.config.enums import Dtype, QuantKind


@dataclass
class QuantConfig:
    name: str = "none"
    load_in_4bit: bool = False
    quant_type: QuantKind = QuantKind.nf4
    double_quant: bool = True
    compute_dtype: Dtype = Dtype.float32
