"""Store -> selection -> analysis -> tables, figures, findings, PDF, in one call."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.config import ReportConfig
from harness.report import plots, tables
from harness.report.compare import Analysis, analyze
from harness.report.findings import Claim, default_claims, findings
from harness.report.select import Selection, select_runs
from harness.report.setup import setup_rows
from harness.results import load, load_curves


class ReportError(ValueError):
    """Nothing to report (empty selection) or a bad report option; the message is one line."""


@dataclass
class Report:
    out_dir: Path
    analysis: Analysis
    failed: pd.DataFrame
    findings: dict  # (task, model) -> {heading: [sentences]}
    files: list[Path] = field(default_factory=list)
    pdf: Path | None = None


def _slug(*parts: str) -> str:
    return "__".join("".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(p)) for p in parts)


def _figures(a: Analysis, curves: pd.DataFrame, task: str, model: str, fig_dir: Path) -> list[tuple[Path, str]]:
    s = _slug(task, model)
    made = [
        (plots.quality_vs_cost(a, task, model, "peak_memory_mib", "accuracy", fig_dir / f"{s}_pareto_memory.png"),
         "Accuracy vs peak memory; dashed: Pareto front (no other configuration is both cheaper and "
         "better). Error bars: 95% CI over seeds."),
        (plots.quality_vs_cost(a, task, model, "trainable_params", "accuracy",
                               fig_dir / f"{s}_pareto_params.png", log_x=True),
         "Accuracy vs trainable parameters (log scale), with the Pareto front."),
        (plots.cost_bars(a, task, model, ["train_samples_per_s", "peak_memory_mib"], fig_dir / f"{s}_cost.png"),
         "Training throughput and peak memory per configuration (95% CI over seeds)."),
        (plots.learning_curves(a, curves, task, model, "accuracy", fig_dir / f"{s}_curves.png"),
         "Validation accuracy per epoch: mean over seeds with a ± std band; the large marker is the "
         "epoch where the mean curve peaks."),
        (plots.rank_sweep(a, task, model, ["accuracy", "peak_memory_mib", "trainable_params"],
                          fig_dir / f"{s}_rank.png"), "Quality and cost against the rank r."),
        (plots.quantization(a, task, model, ["accuracy", "peak_memory_mib", "train_samples_per_s"],
                            fig_dir / f"{s}_quant.png"),
         "The same method settings on a full-precision and a 4-bit base, side by side."),
    ]
    return [(p, c) for p, c in made if p is not None]


def _methods_text(a: Analysis) -> list[str]:
    return [
        f"Aggregates are over seeds: mean, sample standard deviation, n and a {a.confidence:.0%} "
        "Student t-interval for the mean. With n=1 there is no spread and no interval.",
        "Two configurations run on the same seeds are compared with a paired t-test on the per-seed "
        "differences (a seed fixes the data split and initialisation); otherwise with Welch's t-test. "
        "A metric without run-to-run variance (parameter counts, adapter size) is compared exactly. "
        f"p-values are {'Holm-corrected over all pairs of configurations, per metric' if a.correction == 'holm' else 'not corrected for multiple comparisons'}; "
        f"a difference is significant when that p-value is below alpha = {a.alpha}.",
        "The majority-class baseline is the test accuracy of always predicting the most common training "
        "label, computed on each run's own split; a configuration is above it when a one-sided paired "
        "t-test over its runs says so.",
        "Failed runs are listed apart and never enter an aggregate.",
    ]


def build_report(store: str | os.PathLike, out_dir: str | Path, selection: Selection | None = None,
                 options: ReportConfig | None = None, store_label: str | None = None) -> Report:
    options, selection = options or ReportConfig(), selection or Selection()
    out_dir = Path(out_dir)
    runs = load(store, decode=False)
    finished, failed = select_runs(runs, selection)
    if finished.empty and failed.empty:
        raise ReportError(f"no runs in {store} match the selection ({selection.describe()})")
    claims = [c for text in options.claims for c in Claim.parse(text)]
    a = analyze(finished, options.reference, options.alpha, options.correction, options.confidence)
    curves = load_curves(store)
    curves = curves[curves.run_id.isin(finished.run_id)]
    claims = claims or default_claims(a)
    report = Report(out_dir, a, failed, {})
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)

    setup = setup_rows(finished, failed) if len(finished) else [("Runs", f"0 finished, {len(failed)} failed")]
    found, table_items, figure_items = [], [], []
    for (task, model) in sorted(set(zip(finished.task, finished.model))):
        s = _slug(task, model)
        main, diffs = tables.comparison_table(a, task, model), tables.reference_table(a, task, model)
        writers = {"md": lambda t: tables.to_markdown(t), "tex": tables.to_latex,
                   "html": lambda t: tables.HTML_PAGE.format(title=t.title, body=tables.to_html(t))}
        for fmt in options.formats:
            path = out_dir / "tables" / f"{s}.{fmt}"
            if fmt == "csv":
                tables.stats_frame(a, task, model).to_csv(path, index=False)
            elif fmt == "html":
                path.write_text(tables.HTML_PAGE.format(
                    title=main.title, body=tables.to_html(main) + tables.to_html(diffs)))
            else:
                path.write_text(writers[fmt](main) + "\n" + writers[fmt](diffs))
            report.files.append(path)
        table_items += [("table", main)] + ([("table", diffs)] if diffs.rows else [])
        figs = _figures(a, curves, task, model, out_dir / "figures")
        report.files += [p for p, _ in figs]
        figure_items += [("h2", f"{task} — {model}"), ("figures", figs)]
        f = findings(a, curves, task, model, claims)
        report.findings[(task, model)] = f
        found.append(("h2", f"{task} — {model}"))
        for heading, sentences in f.items():
            if sentences:
                found += [("h3", heading), ("bullets", sentences)]
    if len(failed):
        failed_rows = [(f"{r.method} ({r.quant}, r={'—' if pd.isna(r.r) else int(r.r)}, seed {r.seed}) "
                        f"on {r.task}", str(r.error))
                       for r in failed.itertuples()]
        failed.to_csv(out_dir / "failed_runs.csv", index=False)
        report.files.append(out_dir / "failed_runs.csv")
    else:
        failed_rows = [("Failed runs", "none in this selection")]

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "PEFT method comparison"
    subtitle = [f"Generated {now} from {store_label or store}; selection: {selection.describe()}; "
                f"reference method: {options.reference}.",
                f"Compared: {', '.join(sorted(finished.method.unique())) or 'nothing finished'} on "
                f"{', '.join(sorted(finished.task.unique()))} "
                f"({', '.join(sorted(finished.model.unique()))}); {len(finished)} finished runs, "
                f"{len(failed)} failed."]
    sections = [("1. Setup", [("kv", setup)]),
                ("2. Findings", found or ["No finished runs."]),
                ("3. Tables", table_items), ("4. Figures", figure_items),
                ("5. Failed runs (not in any aggregate)", [("kv", failed_rows)]),
                ("6. How the statistics were computed", _methods_text(a))]
    from harness.report.markdown import write_markdown

    report.files.append(write_markdown(out_dir / "report.md", title, subtitle, sections))
    if options.pdf:
        from harness.report.pdf import write_pdf

        report.pdf = write_pdf(out_dir / "report.pdf", title, subtitle, sections)
        report.files.append(report.pdf)
    return report
