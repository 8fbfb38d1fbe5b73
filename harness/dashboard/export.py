"""Downloads of the selection: its runs as CSV (the rows as ``python -m harness.results export``
writes them), and the report of the same runs, written by :func:`harness.report.build_report`
exactly as ``python -m harness.report`` writes it: its PDF, or its whole folder as a zip
(Markdown, HTML, CSV and LaTeX tables, figures, PDF)."""
from __future__ import annotations

import dataclasses
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from dash import Input, Output, State, ctx, dcc, no_update

from harness.config import ReportConfig
from harness.dashboard.callbacks import FILTER_INPUTS
from harness.dashboard.data import StoreView, pick, report_selection
from harness.dashboard.worker import Worker, worker_view
from harness.errors import first_line
from harness.report.build import ReportError, build_report
from harness.results.store import StoreError


def csv_rows(view: StoreView, filters: dict):
    snap = view.snapshot()
    chosen = pick(snap.runs, filters)
    return snap.raw[snap.raw["run_id"].isin(chosen["run_id"])]


def report_files(view: StoreView, filters: dict, options: ReportConfig, out: Path):
    """The report of the selection, written to ``out``."""
    snap = view.snapshot()
    chosen = pick(snap.runs, filters)
    options = dataclasses.replace(options, pdf=True, formats=["md", "csv", "tex", "html"])
    return build_report(view.url, out, report_selection(snap.runs, chosen, filters), options, store_label=view.label)


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, Path("report") / path.relative_to(folder))
    return buffer.getvalue()


def download(view: StoreView, filters: dict, options: ReportConfig, what: str) -> tuple[bytes, str, str]:
    """(the file, its name, a line saying what it holds)."""
    if what == "export-csv":
        rows = csv_rows(view, filters)
        return rows.to_csv(index=False).encode(), "runs.csv", f"runs.csv: {len(rows)} runs"
    out = Path(tempfile.mkdtemp(prefix="harness-dashboard-report-"))
    try:
        report = report_files(view, filters, options, out)
        n = len(report.analysis.per_run)
        if what == "export-pdf":
            return report.pdf.read_bytes(), "report.pdf", f"report.pdf: {n} finished runs"
        return zipped(out), "report.zip", f"report.zip: {len(report.files)} files, {n} finished runs"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def export_file(filters: dict, options: ReportConfig, what: str) -> tuple[bytes, str, str]:
    """:func:`download`, run in the worker process with its own view of the store."""
    return download(worker_view(), filters, options, what)


def register(app, view: StoreView, worker: Worker, options: ReportConfig) -> None:
    """The downloads: the CSV here, the report (seconds to minutes) in the worker process."""
    @app.callback(Output("download", "data"), Output("export-status", "children"),
                  inputs=dict(csv=Input("export-csv", "n_clicks"), pdf=Input("export-pdf", "n_clicks"),
                              zip_=Input("export-zip", "n_clicks")),
                  state=dict(filters={k: State(v.component_id, "value") for k, v in FILTER_INPUTS.items()}),
                  prevent_initial_call=True)
    def export(csv, pdf, zip_, filters):
        what = ctx.triggered_id
        try:
            data, name, status = (download(view, filters, options, what) if what == "export-csv"
                                  else worker.run(f"export {what}", export_file, filters, options, what))
        except (ReportError, StoreError, ValueError, RuntimeError) as exc:
            return no_update, f"not written: {first_line(exc)}"
        return dcc.send_bytes(data, name), status
