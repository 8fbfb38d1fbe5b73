"""Store -> selection -> analysis -> the report's sections -> Markdown and PDF, in one call.

The sections (Setup, Findings, Tables, Figures, Failed runs, How the statistics were computed,
then any a plug-in registers) are plug-ins of :data:`harness.report.sections.SECTIONS`: this
module selects and analyzes the runs, hands each section the same context and writes what they
return.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from harness.config import ReportConfig
from harness.report.compare import analyze
from harness.report.findings import Claim, default_claims
from harness.report.search import searches
from harness.report.sections import Report, SectionContext, build_sections
from harness.report.select import Selection, load_predictions, search_runs, select_runs
from harness.results import load, load_curves
from harness.results.store import redact

__all__ = ["Report", "ReportError", "build_report"]

TITLE = "PEFT method comparison"


class ReportError(ValueError):
    """Nothing to report (empty selection) or a bad report option; the message is one line."""


class Selected(NamedTuple):
    runs: pd.DataFrame  # every run in the store
    finished: pd.DataFrame
    failed: pd.DataFrame
    search: pd.DataFrame  # the learning-rate search trials


def _select(store: str | os.PathLike, selection: Selection) -> Selected:
    """The runs ``selection`` picks; a :class:`ReportError` when it holds no finished or failed run."""
    runs = load(store, decode=False)
    finished, failed = select_runs(runs, selection)
    search = search_runs(runs, selection)
    if finished.empty and failed.empty:
        hint = (f"; {len(search)} search trial{'s' * (len(search) != 1)} do (--stage search or --stage all)"
                if len(search) and selection.stage == "final" else "")
        raise ReportError(f"no runs in {redact(store)} match the selection ({selection.describe()}){hint}")
    return Selected(runs, finished, failed, search)


def section_context(store: str | os.PathLike, out_dir: Path, selection: Selection, options: ReportConfig,
                    selected: Selected) -> SectionContext:
    """Analyze the selected runs: what every section reads (:mod:`harness.report.sections`), for
    the report and for any other reader of its findings (the dashboard). The sections write their
    tables' CSV files under ``out_dir/tables``, which is made."""
    runs, finished, failed, search = selected
    claims = [c for text in options.claims for c in Claim.parse(text)]
    a = analyze(finished, options.reference, options.alpha, options.correction, options.confidence,
                predictions=(preds := load_predictions(store, finished)), claims=claims)
    finished = finished[~finished.run_id.isin(a.duplicates.run_id)] if len(a.duplicates) else finished
    curves = load_curves(store)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    return SectionContext(
        store=store, out_dir=out_dir, options=options, selection=selection, analysis=a,
        finished=finished, failed=failed, search=search, curves=curves[curves.run_id.isin(finished.run_id)],
        claims=claims or default_claims(a), lines=searches(search, runs, a.per_run), predictions=preds,
        report=Report(out_dir, a, failed, {}))


def _subtitle(context: SectionContext, store_label: str | None) -> list[str]:
    finished, failed, options = context.finished, context.failed, context.options
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [f"Generated {now} from {store_label or redact(context.store)}; selection: "
            f"{context.selection.describe()}; reference method: {options.reference}.",
            f"Compared: {', '.join(sorted(finished.method.unique())) or 'nothing finished'} on "
            f"{', '.join(sorted(finished.task.unique()))} "
            f"({', '.join(sorted(finished.model.unique()))}); {len(finished)} finished runs, "
            f"{len(failed)} failed."]


def _write(context: SectionContext, sections: list[tuple[str, list]], store_label: str | None) -> None:
    """report.md, and report.pdf unless ``options.pdf`` is off."""
    from harness.report.markdown import write_markdown

    report, subtitle = context.report, _subtitle(context, store_label)
    report.files.append(write_markdown(context.out_dir / "report.md", TITLE, subtitle, sections))
    if context.options.pdf:
        from harness.report.pdf import write_pdf

        report.pdf = write_pdf(context.out_dir / "report.pdf", TITLE, subtitle, sections)
        report.files.append(report.pdf)


def build_report(store: str | os.PathLike, out_dir: str | Path, selection: Selection | None = None,
                 options: ReportConfig | None = None, store_label: str | None = None) -> Report:
    """The report of the runs of ``store`` that ``selection`` picks, written to ``out_dir``: select
    and analyze the runs, build each registered section (harness.report.sections.SECTIONS), then
    write report.md and report.pdf."""
    options, selection = options or ReportConfig(), selection or Selection()
    selected = _select(store, selection)
    context = section_context(store, Path(out_dir), selection, options, selected)
    sections = build_sections(context)
    _write(context, sections, store_label)
    return context.report


def claim_verdicts(store: str | os.PathLike, selection: Selection | None = None,
                   options: ReportConfig | None = None) -> list:
    """The published claims' verdicts (:mod:`harness.report.verdicts`) on the runs of ``store``
    that ``selection`` picks, without writing a report; every claim says "no runs" and names its
    command where the store holds none that bear on it."""
    from harness.report.claimfile import load_claims
    from harness.report.select import run_predictions
    from harness.report.verdicts import judge_claims

    options, selection = options or ReportConfig(), selection or Selection()
    claims = load_claims(options.claims_dirs)
    runs = load(store, decode=False)
    finished, _ = select_runs(runs, selection)
    if finished.empty:
        return judge_claims(claims, pd.DataFrame(columns=["task", "model", "label", "seed", "run_id"]), {},
                            pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value"]))
    a = analyze(finished, options.reference, options.alpha, options.correction, options.confidence,
                predictions=(preds := load_predictions(store, finished)))
    curves = load_curves(store)
    return judge_claims(claims, a.per_run, run_predictions(finished, preds),
                        curves[curves.run_id.isin(finished.run_id)], a.alpha, a.confidence)
