"""Hydra callback: when a multirun ends, write the report for that sweep (``report.enabled``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.config import ReportConfig
        from harness.results.identity import sweep_label
        from harness.report.build import ReportError, build_report
        from harness.results import StoreError

        settings = config.get("report")
        if settings is None or not settings.get("enabled", True):
            return
        options = ReportConfig(**OmegaConf.to_container(settings, resolve=True))
        sweep = sweep_label(config.store.sweep, config.get("hydra"))
        out = Path(options.out_dir or Path(str(config.hydra.sweep.dir)) / "report")
        try:
            report = build_report(config.store.url, out, grid_selection(sweep, config), options)
        except (ReportError, StoreError) as exc:
            print(f"[report] no report for sweep {sweep}: {exc}")
            return
        print(f"[report] wrote {out}" + (f" (PDF: {report.pdf})" if report.pdf else ""))


def grid_selection(sweep: str | None, config: DictConfig | None = None):
    """The runs a sweep's report covers: every configuration of the command's grid that the store
    holds, whichever command trained it (a resumed sweep's earlier runs included), from the plan
    ``python -m harness`` wrote (:func:`harness.sweep.summary.read_launch`); without one (another entry
    point), the runs labelled with this sweep."""
    from harness.report.select import Selection
    from harness.sweep.summary import is_dynamic, command_outcome, read_launch

    plan = read_launch()
    if plan is None:
        return Selection({"sweep": [sweep]})
    outcome = command_outcome(*plan, dynamic=config is not None and is_dynamic(config))
    hashes = [*outcome.finished.get("config_hash", []), *outcome.failed.get("config_hash", [])]
    return Selection(config_hashes=[str(h) for h in hashes])
