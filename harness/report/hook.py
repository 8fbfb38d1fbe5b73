"""Hydra callback: when a multirun ends, write the report for that sweep (``report.enabled``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.config import ReportConfig
        from harness.identity import sweep_label
        from harness.report.build import ReportError, build_report
        from harness.report.select import Selection
        from harness.results import StoreError

        settings = config.get("report")
        if settings is None or not settings.get("enabled", True):
            return
        options = ReportConfig(**OmegaConf.to_container(settings, resolve=True))
        sweep = sweep_label(config.store.sweep, config.get("hydra"))
        out = Path(options.out_dir or Path(str(config.hydra.sweep.dir)) / "report")
        try:
            report = build_report(config.store.url, out, Selection({"sweep": [sweep]}), options)
        except (ReportError, StoreError) as exc:
            print(f"[report] no report for sweep {sweep}: {exc}")
            return
        print(f"[report] wrote {out}" + (f" (PDF: {report.pdf})" if report.pdf else ""))
