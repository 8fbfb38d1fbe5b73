"""The ``method`` config group: the PEFT method's shared fields, and the registry of methods' own
schemas (subclasses of :class:`MethodConfig` with fields of their own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from harness.config.checks import check, positive_finite, positive_int
from harness.config.enums import QuantNeed


@dataclass
class MethodConfig:
    name: str = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    lr: float = 2e-3  # the LoRA family's shared default (conf/method/lora.yaml)
    weight_decay: float = 0.0
    use_dora: bool = False
    # None: the model config's target modules for this family.
    target_modules: Optional[list[str]] = None
    quant: QuantNeed = QuantNeed.any
    builder: Optional[str] = None  # the registered method that builds this config; null: the method's name

    @property
    def unshardable(self) -> Optional[str]:
        """Why this method cannot train with ``trainer.strategy=fsdp`` (None: it can)."""
        return None

    @property
    def reads_data_before_training(self) -> bool:
        """Whether its "before training" hook passes training data through the loaded weights
        (so every FSDP process needs them: ``trainer.fsdp_load=every``)."""
        return False

    def __post_init__(self) -> None:
        positive_int("method.r", self.r)
        positive_finite("method.alpha", self.alpha)
        check(0.0 <= self.dropout < 1.0, f"method.dropout must be in [0, 1), got {self.dropout!r}")
        positive_finite("method.lr", self.lr)
        check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
              f"method.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")


# Methods with fields of their own subclass MethodConfig and register it with
# ``register_method_schema``; their YAML file then starts from it
# (``defaults: [<name>_schema, _self_]``).
METHOD_SCHEMAS: dict[str, type[MethodConfig]] = {}


def register_method_schema(name: str, schema: type[MethodConfig]) -> type[MethodConfig]:
    METHOD_SCHEMAS[name] = schema
    return schema
