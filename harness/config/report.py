"""The ``report`` config group: what the report of a sweep writes, and its cost view's prices."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from harness.config.checks import check
from harness.config.enums import DeviceKind


# The device kinds a run records (its device_kind column: what trainer.device resolved to).
COST_DEVICE_KINDS = tuple(k.value for k in DeviceKind if k != DeviceKind.auto)


@dataclass
class CostConfig:
    """Money for a run in the report's cost view: wall_s / 3600 * per_device_hour[device_kind]."""

    # Price of one hour of each device kind, keyed like the runs' device_kind (cpu, cuda); null:
    # no price, so runs on that kind get no money figure (never a guessed one). Every kind is a
    # key already, so ``report.cost.per_device_hour.cpu=0.05`` overrides it on the command line.
    per_device_hour: dict[str, Optional[float]] = field(
        default_factory=lambda: {k: None for k in COST_DEVICE_KINDS})
    currency: str = "USD"

    def __post_init__(self) -> None:
        check(isinstance(self.per_device_hour, dict),
              f"report.cost.per_device_hour must map a device kind to a price, e.g. {{cpu: 0.05}}; "
              f"got {self.per_device_hour!r}")
        for kind, price in self.per_device_hour.items():
            check(kind in COST_DEVICE_KINDS, f"report.cost.per_device_hour: unknown device kind "
                                             f"{kind!r}; known: {', '.join(COST_DEVICE_KINDS)}")
            check(price is None or (isinstance(price, (int, float)) and not isinstance(price, bool)
                                    and math.isfinite(price) and price >= 0),
                  f"report.cost.per_device_hour.{kind} must be a finite price >= 0 or null, got {price!r}")
        check(isinstance(self.currency, str) and self.currency.strip() != "",
              f"report.cost.currency must be a non-empty text such as USD, got {self.currency!r}")

    def prices(self) -> dict[str, float]:
        """{device kind: price per hour} of the kinds that have a price."""
        return {k: float(v) for k, v in self.per_device_hour.items() if v is not None}


@dataclass
class ReportConfig:
    """What ``python -m harness.report`` and the end of a multirun write (see docs/report.md)."""

    enabled: bool = True  # write a report for the sweep when a multirun ends
    reference: str = "lora"  # every configuration is compared against this method
    alpha: float = 0.05
    confidence: float = 0.95
    correction: str = "holm"  # holm | none: over all pairs of configurations, per metric
    formats: list[str] = field(default_factory=lambda: ["md", "csv", "tex", "html"])
    pdf: bool = True
    # "X>Y" or "X>Y:metric" claims to check; by default "each method beats the reference".
    claims: list[str] = field(default_factory=list)
    # Folders of published-claim files besides the shipped conf/claims (harness.report.claimfile).
    claims_dirs: list[str] = field(default_factory=list)
    out_dir: Optional[str] = None  # default: <sweep dir>/report
    # Turns time into money in the cost view (empty: no money shown); see CostConfig.
    cost: CostConfig = field(default_factory=CostConfig)
    # "What fits your budget": the memory planner (python -m harness.plan) for the report's
    # methods on the run these overrides describe, e.g. "model=qwen trainer.device=cuda
    # trainer.batch_size=8"; null: no such section. budget_gib marks what fits.
    plan: Optional[str] = None
    budget_gib: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.cost, dict):  # a plain container (the end-of-sweep hook, a stored config)
            unknown = sorted(set(self.cost) - {"per_device_hour", "currency"})
            check(not unknown, f"report.cost: unknown key(s) {', '.join(map(str, unknown))}; "
                               "allowed: per_device_hour, currency")
            self.cost = CostConfig(**self.cost)
        check(isinstance(self.cost, CostConfig),
              f"report.cost must be a mapping with per_device_hour and currency, got {self.cost!r}")
        check(self.budget_gib is None or (math.isfinite(self.budget_gib) and self.budget_gib > 0),
              f"report.budget_gib must be a positive number of GiB, got {self.budget_gib!r}")
        check(0 < self.alpha < 1, f"report.alpha must be in (0, 1), got {self.alpha!r}")
        check(0 < self.confidence < 1, f"report.confidence must be in (0, 1), got {self.confidence!r}")
        check(self.correction in ("holm", "none"),
              f"report.correction must be one of holm, none; got {self.correction!r}")
        bad = [f for f in self.formats if f not in ("md", "csv", "tex", "html")]
        check(not bad, f"report.formats: unknown {bad}; allowed: md, csv, tex, html")
