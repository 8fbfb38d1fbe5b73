"""The ``protocol`` config group: how a comparison gives every method its learning rate.

- ``fixed`` (default): each run trains at its method's configured ``method.lr``.
- ``tuned``: each grid point first runs a learning-rate search on the validation split (seed
  ``search_seed``, rates ``method.lr`` x ``lr_factors``, or ``lr_grid``), picks the rate with the
  best validation value of ``trainer.select_metric``, then trains its final runs at that rate on
  ``seeds`` and tests them (:mod:`harness.sweep.protocol`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from harness.errors import ConfigError

STAGES = ("search", "final")


@dataclass
class ProtocolConfig:
    name: str = "fixed"  # fixed | tuned
    # tuned: the rates tried are method.lr times each factor (a log grid around the method's
    # default, so full fine-tuning's grid sits as low as its default), or lr_grid when given.
    lr_factors: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    lr_grid: Optional[list[float]] = None
    search_seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Set by the tuned protocol on the runs it launches (part of their identity); leave null.
    stage: Optional[str] = None
    search_id: Optional[str] = None

    def __post_init__(self) -> None:
        if self.name not in ("fixed", "tuned"):
            raise ConfigError(f"protocol.name must be one of fixed, tuned; got {self.name!r}")
        if not self.lr_factors:
            raise ConfigError("protocol.lr_factors and protocol.lr_grid must be finite and > 0, "
                              "got an empty protocol.lr_factors")
        for key, rates in (("lr_grid", self.lr_grid or []), ("lr_factors", self.lr_factors)):
            bad = [r for r in rates if not (math.isfinite(r) and r > 0)]
            if bad:
                raise ConfigError(f"protocol.lr_factors and protocol.lr_grid must be finite and > 0, "
                                  f"got {bad[0]!r} in protocol.{key}={list(rates)}")
        if not self.seeds or any(s < 0 for s in [*self.seeds, self.search_seed]):
            raise ConfigError(f"protocol.seeds must be a non-empty list of seeds >= 0, got "
                              f"{list(self.seeds)} (search_seed {self.search_seed})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"protocol.seeds must not repeat a seed, got {list(self.seeds)}")
        if self.stage not in (None, *STAGES):
            raise ConfigError(f"protocol.stage is set by the tuned protocol ({', '.join(STAGES)}); "
                              f"got {self.stage!r}")
