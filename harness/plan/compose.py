"""A planner's command line as run configs: the same overrides, groups and checks as a run."""
from __future__ import annotations

import os


def configs(overrides: list[str]) -> list:
    """One validated RunConfig per point of the overrides' grid."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.device import PLAN_DEVICE_ENV
    from harness.paths import conf_dir
    from harness.config import DeviceKind
    from harness.errors import ConfigError
    from harness.sweep.overrides import one_line
    from harness.sweep.preflight import check_group_choices, expand
    from harness.job.validation import register_schemas, validate

    register_schemas()
    device = [o.split("=", 1)[1] for o in overrides if o.startswith("trainer.device=")]
    gpu = bool(device) and device[-1] == "cuda"  # planned for a GPU, whether or not this machine has one
    if gpu:  # composed for auto, checked as if auto were a GPU, then set to cuda
        overrides = [o for o in overrides if not o.startswith("trainer.device=")] + ["trainer.device=auto"]
    jobs, _ = expand(overrides, multirun=True)
    before = os.environ.get(PLAN_DEVICE_ENV)
    GlobalHydra.instance().clear()
    try:
        if gpu:
            os.environ[PLAN_DEVICE_ENV] = "cuda"
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            out = []
            for job in jobs:
                check_group_choices(job)  # an unknown method=/model=/... named in one line
                try:
                    composed = compose(config_name="config", overrides=job)
                except Exception as exc:  # noqa: BLE001 - Hydra's composition errors, one line
                    raise ConfigError(one_line(exc)) from None
                cfg = validate(composed)
                if gpu:
                    cfg.trainer.device = DeviceKind.cuda
                out.append(cfg)
            return out
    finally:
        GlobalHydra.instance().clear()
        if before is None:
            os.environ.pop(PLAN_DEVICE_ENV, None)
        else:
            os.environ[PLAN_DEVICE_ENV] = before
