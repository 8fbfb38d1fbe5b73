"""Typed schemas for every config group.

Hydra merges each YAML file onto the dataclass registered for its group, so a misspelt key or a
value of the wrong type fails at composition time. Checks that types cannot express (ranges,
combinations within a group) live in ``__post_init__``. The schemas import no plug-in: names
that must exist in a registry, and what a method supports, are checked by
:func:`harness.job.validation.validate`, the one validation step, before any training.

One module per config group; this package re-exports every name, so ``from harness.config
import X`` is the way to reach any of them:

- :mod:`~harness.config.checks`: ``check``, ``positive_int``, ``positive_finite`` (raise
  :class:`~harness.errors.ConfigError`, re-exported here).
- :mod:`~harness.config.enums`: the value sets of fields (``Dtype``, ``DeviceKind``,
  ``Optimizer``, ``QuantNeed``, ``Truncation``, ``TrackerMode``, ...).
- :mod:`~harness.config.quant`: ``QuantConfig``.
- :mod:`~harness.config.method`: ``MethodConfig``, ``METHOD_SCHEMAS``, ``register_method_schema``.
- :mod:`~harness.config.model`: ``ModelConfig``.
- :mod:`~harness.config.task`: ``TaskConfig``, ``FILE_LOADERS``, ``MIN_LENGTH``, ``TASK_SCHEMAS``,
  ``register_task_schema``.
- :mod:`~harness.config.trainer`: ``TrainerConfig``.
- :mod:`~harness.config.store`: ``StoreConfig`` and ``TrackerConfig``.
- :mod:`~harness.config.protocol`: ``ProtocolConfig``.
- :mod:`~harness.config.report`: ``ReportConfig``, ``CostConfig``, ``COST_DEVICE_KINDS``.
- :mod:`~harness.config.run`: ``RunConfig``, the whole composed config of one run.
"""
from __future__ import annotations

from harness.config.checks import check, positive_finite, positive_int
from harness.config.enums import (Autocast, DeviceKind, Dtype, FsdpLoad, FsdpTest, Optimizer, QuantKind,
                                  QuantNeed, Select, Strategy, TrackerMode, Truncation)
from harness.config.method import METHOD_SCHEMAS, MethodConfig, register_method_schema
from harness.config.model import ModelConfig
from harness.config.protocol import ProtocolConfig
from harness.config.quant import QuantConfig
from harness.config.report import COST_DEVICE_KINDS, CostConfig, ReportConfig
from harness.config.run import RunConfig
from harness.config.store import StoreConfig, TrackerConfig
from harness.config.task import FILE_LOADERS, MIN_LENGTH, TASK_SCHEMAS, TaskConfig, register_task_schema
from harness.config.trainer import TrainerConfig
from harness.errors import ConfigError

__all__ = [
    # checks (and the error they raise)
    "ConfigError", "check", "positive_finite", "positive_int",
    # enums
    "Autocast", "DeviceKind", "Dtype", "FsdpLoad", "FsdpTest", "Optimizer", "QuantKind", "QuantNeed",
    "Select", "Strategy", "TrackerMode", "Truncation",
    # one schema per group
    "QuantConfig",
    "METHOD_SCHEMAS", "MethodConfig", "register_method_schema",
    "ModelConfig",
    "FILE_LOADERS", "MIN_LENGTH", "TASK_SCHEMAS", "TaskConfig", "register_task_schema",
    "TrainerConfig",
    "StoreConfig", "TrackerConfig",
    "ProtocolConfig",
    "COST_DEVICE_KINDS", "CostConfig", "ReportConfig",
    "RunConfig",
]
