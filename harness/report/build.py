"""Store -> selection -> analysis -> tables, figures, findings, PDF, in one call."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.errors import first_line
from harness.config import ReportConfig
from harness.report import cost, plots, tables
from harness.report.compare import Analysis, analyze, methods_text
from harness.report.data_notes import cut_setup_row, data_findings
from harness.report.stats import RESAMPLES
from harness.report.findings import Claim, default_claims, findings
from harness.report.search import searches
from harness.report.select import Selection, load_predictions, search_runs, select_runs
from harness.report.setup import duplicates_text, setup_rows
from harness.results.store import redact
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


def _search_figure(lines: list, task: str, model: str, fig_dir: Path) -> list[tuple[Path, str]]:
    metrics = ", ".join(dict.fromkeys(l.metric for l in lines if (l.task, l.model) == (task, model)))
    path = plots.lr_search(lines, task, model, fig_dir / f"{_slug(task, model)}_lr_search.png")
    return [] if path is None else [(path, (
        f"Learning-rate search (protocol=tuned): validation {metrics} of each search trial against "
        "its learning rate (log scale), one line per configuration; star: the chosen rate, at which "
        "the final runs trained. Search trials enter the tables only with --stage search or all."))]


def _figures(a: Analysis, curves: pd.DataFrame, task: str, model: str, fig_dir: Path,
             lines: list | None = None) -> list[tuple[Path, str]]:
    if not len(a.runs(task, model)):  # only search trials here: their figure alone
        return _search_figure(lines or [], task, model, fig_dir)
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
    return [(p, c + plots.capped_note(a, task, model)) for p, c in made if p is not None] + _search_figure(lines or [], task, model, fig_dir)


COST_CAPTION = ("Accuracy against training time (and against energy where the runs measured it): "
                "mean per configuration, error bars the 95% intervals over seeds; dashed: the Pareto front "
                "(none on energies of different kinds: a CPU package and a GPU are not one scale).")


def _methods_text(a: Analysis) -> list[str]:
    return [
        f"Aggregates are over seeds: mean, sample standard deviation, n and a {a.confidence:.0%} "
        "Student t-interval for the mean. With n=1 there is no spread and no interval.",
        "A configuration (a table row) is the whole resolved config apart from the seed, with the data, "
        "model, device kind and harness version it was computed from; runs of one method with another "
        "learning rate, data size or epoch count are other rows, labelled by the settings that differ, "
        "never averaged together. A configuration stored more than once (the same config_hash) counts "
        "once: the latest finished row is kept and the others are counted in the setup.",
        "Accuracy and macro-F1, where the store kept each run's per-example test predictions: with one "
        "seed on each side, accuracy by the exact McNemar test (a binomial test on the examples exactly "
        "one of the two runs got right; interval from the exact Clopper-Pearson interval) and macro-F1 "
        "by a paired bootstrap over test examples (95% percentile interval; p from the share of "
        "resampled differences on either side of zero); with several seeds on both sides, by a two-level "
        f"paired bootstrap that resamples seeds and then test examples within each seed. Bootstraps "
        f"draw {RESAMPLES} resamples from a fixed seed, so the report is reproducible. On seeds only one "
        "side ran, the test uses the seeds both ran and says so.",
        "Without predictions (older runs) and for every other metric, seeds are the unit: two "
        "configurations run on the same seeds are compared with a paired t-test on the per-seed "
        "differences (a seed fixes the data split and initialisation), otherwise with Welch's t-test; "
        "with one run on a side there is no test. A metric without run-to-run variance (parameter "
        "counts, adapter size) is compared exactly. Every comparison names its test, n in seeds and "
        "test examples, the effect's 95% interval, and whether the two rows had the same configuration "
        "apart from the method (method.* left out) and the same budget; it warns where they mix "
        "harness versions. "
        f"p-values are {'Holm-corrected over all pairs of configurations, per metric' if a.correction == 'holm' else 'not corrected for multiple comparisons'}; "
        f"a difference is significant when that p-value is below alpha = {a.alpha}.",
        "The majority-class baseline is the test accuracy of always predicting the most common training "
        "label, computed on each run's own split; a configuration is above it when a one-sided test "
        "says so: exact McNemar against the majority-class predictions of the same examples with one "
        "seed, the two-level bootstrap with several, a one-sided paired t-test over runs without "
        "predictions.",
        "Failed runs are listed apart and never enter an aggregate.",
        "Under protocol=tuned each grid point first trains search trials (one per learning rate, "
        "on the search seed) and picks the rate with the best validation value (ties: the lower "
        "rate); its final runs train at that rate and are the runs reported. Search trials enter "
        "no aggregate, table, test or default figure unless selected (--stage search or all); "
        "the learning-rate search figure shows them. The LR column gives the rate of each row's "
        "runs and flags a row whose runs do not share one.",
        "Equal budgets: under each table the report checks that its runs took the same number of "
        "optimizer steps, saw the same training examples and tokens and had the same data sizes "
        "(or, where the seed's data split changes the token count, the same on each seed), names "
        "the configurations that differ, and calls the budget unknown for runs stored before "
        "these were recorded.",
    ] + methods_text(a.families)  # tables too large to test every pair (harness.report.family)


def _stage_text(selection: Selection, finished: pd.DataFrame, search: pd.DataFrame) -> str:
    from harness.report.select import stages

    counts = stages(finished).replace("", "fixed").value_counts()
    have = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none finished"
    text = {"final": "final runs of tuned grid points and fixed-protocol runs (the default)",
            "search": "search trials only (--stage search)",
            "all": "every stage, search trials included (--stage all)"}[selection.stage]
    text += f"; reported: {have}"
    if selection.stage == "final" and len(search):
        text += (f"; {len(search)} search trial{'s' * (len(search) != 1)} left out of every "
                 "aggregate (see the learning-rate search figure)")
    return text


def build_report(store: str | os.PathLike, out_dir: str | Path, selection: Selection | None = None,
                 options: ReportConfig | None = None, store_label: str | None = None) -> Report:
    options, selection = options or ReportConfig(), selection or Selection()
    out_dir = Path(out_dir)
    runs = load(store, decode=False)
    finished, failed = select_runs(runs, selection)
    search = search_runs(runs, selection)
    if finished.empty and failed.empty:
        hint = (f"; {len(search)} search trial{'s' * (len(search) != 1)} do (--stage search or --stage all)"
                if len(search) and selection.stage == "final" else "")
        raise ReportError(f"no runs in {redact(store)} match the selection ({selection.describe()}){hint}")
    claims = [c for text in options.claims for c in Claim.parse(text)]
    a = analyze(finished, options.reference, options.alpha, options.correction, options.confidence,
                predictions=(preds := load_predictions(store, finished)), claims=claims)
    finished = finished[~finished.run_id.isin(a.duplicates.run_id)] if len(a.duplicates) else finished
    curves = load_curves(store)
    curves = curves[curves.run_id.isin(finished.run_id)]
    claims = claims or default_claims(a)
    lines = searches(search, runs, a.per_run)
    report = Report(out_dir, a, failed, {})
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)

    setup = setup_rows(finished, failed) if len(finished) else [("Runs", f"0 finished, {len(failed)} failed")]
    setup.insert(1, ("Protocol stage", _stage_text(selection, finished, search)))
    setup.insert(2, ("Duplicate rows", duplicates_text(a.duplicates)))
    setup.insert(3, cut_setup_row(finished))
    setup.insert(4, ("Per-example predictions", f"stored for {len(a.with_predictions)} of "
                     f"{len(a.per_run)} finished runs (tests on test examples where both sides have them)"))
    found, table_items, figure_items = [], [], []
    compared = set(zip(finished.task, finished.model))
    for (task, model) in sorted(compared | {(l.task, l.model) for l in lines}):
        if (task, model) not in compared:  # search trials only (no final run yet): their figure
            figs = _figures(a, curves, task, model, out_dir / "figures", lines)
            report.files += [p for p, _ in figs]
            figure_items += [("h2", f"{task} — {model}"), ("figures", figs)] if figs else []
            continue
        s = _slug(task, model)
        main, diffs = tables.comparison_table(a, task, model), tables.reference_table(a, task, model)
        spend = cost.cost_table(a, finished, task, model, options.cost)
        writers = {"md": lambda t: tables.to_markdown(t), "tex": tables.to_latex,
                   "html": lambda t: tables.html_page(t.title, tables.to_html(t))}
        for fmt in options.formats:
            path = out_dir / "tables" / f"{s}.{fmt}"
            if fmt == "csv":
                tables.stats_frame(a, task, model).to_csv(path, index=False)
                cost.cost_frame(a, finished, task, model, options.cost).to_csv(
                    path.with_name(f"{s}_cost.csv"), index=False)
                report.files.append(path.with_name(f"{s}_cost.csv"))
            elif fmt == "html":
                path.write_text(tables.html_page(main.title, "".join(map(tables.to_html, (main, diffs, spend)))),
                                encoding="utf-8")
            else:
                path.write_text("\n".join(writers[fmt](t) for t in (main, diffs, spend)))
            report.files.append(path)
        table_items += [("table", main)] + ([("table", diffs)] if diffs.rows else []) + [("table", spend)]
        figs = _figures(a, curves, task, model, out_dir / "figures", lines)
        spent = cost.cost_figure(a, finished, task, model, out_dir / "figures" / f"{s}_cost_quality.png")
        figs += [(spent, COST_CAPTION + plots.capped_note(a, task, model))] if spent else []
        report.files += [p for p, _ in figs]
        figure_items += [("h2", f"{task} — {model}"), ("figures", figs)]
        f = {**findings(a, curves, task, model, claims, lines), **data_findings(finished, preds, task, model)}
        report.findings[(task, model)] = f
        found.append(("h2", f"{task} — {model}"))
        for heading, sentences in f.items():
            if sentences:
                found += [("h3", heading), ("bullets", sentences)]
    if options.plan:
        from harness.report.fits import fits_table

        try:
            fits = [("table", fits_table(options.plan, options.budget_gib, sorted(finished.method.unique()),
                                         str(store)))]
        except Exception as exc:  # noqa: BLE001 - a bad report.plan costs its section, not the report
            fits = [("bullets", [f"Not planned: {first_line(exc)}"])]
        table_items += [("h2", "What fits your budget"), *fits]
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
    subtitle = [f"Generated {now} from {store_label or redact(store)}; selection: {selection.describe()}; "
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
