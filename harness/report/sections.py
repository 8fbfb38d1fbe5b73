"""The report's sections, each a plug-in: a function registered in :data:`SECTIONS`.

A section function gets the :class:`SectionContext` (the selected runs, their analysis, the
options, the :class:`Report` being built) and returns its title and its items, the items the
Markdown and PDF writers take: a plain string (a paragraph), ``("h2", text)``, ``("h3", text)``,
``("bullets", [text, ...])``, ``("kv", [(key, value), ...])``, ``("table", Table)``,
``("figures", [(path, caption), ...])`` or ``"pagebreak"``. A section that writes files adds
them to ``context.report.files``.

The sections are numbered in the order they were registered: the seven below first (1. Setup to
7. Published claims), then those of plug-ins, as they were imported. A section
that raises loses only itself: the report shows "Not built: <the error's first line>" under its
title (the registered ``title=``, else its name). docs/extending.md has a plug-in's skeleton.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.config import ReportConfig
from harness.errors import first_line
from harness.registry import Registry
from harness.report import cost, plots, tables
from harness.report.compare import Analysis
from harness.report.data_notes import cut_setup_row, data_findings, repeated_setup_row
from harness.report.figures import COST_CAPTION, pair_figures, slug
from harness.report.findings import Claim, findings
from harness.report.prose import stage_text, statistics_text
from harness.report.select import Selection
from harness.report.setup import duplicates_text, setup_rows


@dataclass
class Report:
    out_dir: Path
    analysis: Analysis
    failed: pd.DataFrame
    findings: dict  # (task, model) -> {heading: [sentences]}
    files: list[Path] = field(default_factory=list)
    pdf: Path | None = None


@dataclass
class SectionContext:
    """What every section reads: the runs the selection picked, their analysis and the options."""

    store: str | os.PathLike  # the results store's URL or path
    out_dir: Path  # the report's folder (its tables/ subfolder exists)
    options: ReportConfig
    selection: Selection
    analysis: Analysis  # aggregates, tests and budget checks of the finished runs
    finished: pd.DataFrame  # the finished runs reported (duplicate rows left out)
    failed: pd.DataFrame  # the failed runs of the selection
    search: pd.DataFrame  # the learning-rate search trials the selection left out (or reports)
    curves: pd.DataFrame  # the finished runs' per-epoch curves
    claims: list[Claim]  # the claims the findings check (the options', else the defaults)
    lines: list  # the learning-rate searches (harness.report.search.Search)
    predictions: dict  # run_id -> per-example test predictions (empty where none were kept)
    report: Report  # the report being built: its files and findings

    @property
    def compared(self) -> list[tuple[str, str]]:
        """The (task, model) pairs with finished runs, sorted: each has its tables and findings."""
        return sorted(set(zip(self.finished.task, self.finished.model)))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The compared pairs and those with search trials only, sorted: each has its figures."""
        return sorted(set(self.compared) | {(l.task, l.model) for l in self.lines})


Item = str | tuple  # a paragraph, "pagebreak", or (kind, content)
Section = Callable[[SectionContext], tuple[str, list]]  # -> (title, [Item, ...])


class SectionRegistry(Registry[Section]):
    def in_order(self) -> list[str]:
        """The section names in the order they were registered (the report's order)."""
        return list(self._items)


SECTIONS: SectionRegistry = SectionRegistry("report section")


def build_sections(context: SectionContext) -> list[tuple[str, list]]:
    """Each registered section, numbered: [("1. Setup", items), ...]."""
    built = []
    for number, name in enumerate(SECTIONS.in_order(), start=1):
        try:
            title, items = SECTIONS.get(name)(context)
            items = list(items)
        except Exception as exc:  # noqa: BLE001 - a failing section costs itself, not the report
            title = SECTIONS.info(name).get("title", name)
            items = [("bullets", [f"Not built: {first_line(exc)}"])]
        built.append((f"{number}. {title}", items))
    return built


# --- the built-in sections, in the report's order ---------------------------------------------

@SECTIONS.register("setup", title="Setup")
def setup_section(context: SectionContext) -> tuple[str, list]:
    finished, failed, a = context.finished, context.failed, context.analysis
    rows = setup_rows(finished, failed) if len(finished) else [("Runs", f"0 finished, {len(failed)} failed")]
    rows[1:1] = [("Protocol stage", stage_text(context.selection, finished, context.search)),
                 ("Duplicate rows", duplicates_text(a.duplicates)),
                 cut_setup_row(finished),
                 repeated_setup_row(finished),
                 ("Per-example predictions", f"stored for {len(a.with_predictions)} of {len(a.per_run)} "
                  "finished runs (tests on test examples where both sides have them)")]
    return "Setup", [("kv", rows)]


@SECTIONS.register("findings", title="Findings")
def findings_section(context: SectionContext) -> tuple[str, list]:
    """Each (task, model)'s findings, also kept in ``report.findings``."""
    found: list = []
    for task, model in context.compared:
        f = {**findings(context.analysis, context.curves, task, model, context.claims, context.lines),
             **data_findings(context.finished, context.predictions, task, model)}
        context.report.findings[(task, model)] = f
        found.append(("h2", f"{task} — {model}"))
        for heading, sentences in f.items():
            if sentences:
                found += [("h3", heading), ("bullets", sentences)]
    return "Findings", found or ["No finished runs."]


def write_tables(context: SectionContext, task: str, model: str) -> list:
    """One (task, model)'s comparison, reference and cost tables, written to tables/ in each of
    ``options.formats``; returns their items."""
    a, finished, options = context.analysis, context.finished, context.options
    s = slug(task, model)
    main, diffs = tables.comparison_table(a, task, model), tables.reference_table(a, task, model)
    spend = cost.cost_table(a, finished, task, model, options.cost)
    writers = {"md": lambda t: tables.to_markdown(t), "tex": tables.to_latex,
               "html": lambda t: tables.html_page(t.title, tables.to_html(t))}
    for fmt in options.formats:
        path = context.out_dir / "tables" / f"{s}.{fmt}"
        if fmt == "csv":
            tables.stats_frame(a, task, model).to_csv(path, index=False)
            cost.cost_frame(a, finished, task, model, options.cost).to_csv(
                path.with_name(f"{s}_cost.csv"), index=False)
            context.report.files.append(path.with_name(f"{s}_cost.csv"))
        elif fmt == "html":
            path.write_text(tables.html_page(main.title, "".join(map(tables.to_html, (main, diffs, spend)))),
                            encoding="utf-8")
        else:
            path.write_text("\n".join(writers[fmt](t) for t in (main, diffs, spend)))
        context.report.files.append(path)
    return [("table", main)] + ([("table", diffs)] if diffs.rows else []) + [("table", spend)]


def fits_items(context: SectionContext) -> list:
    """"What fits your budget" (``options.plan``): the memory planner for the compared methods."""
    options = context.options
    if not options.plan:
        return []
    from harness.report.fits import fits_table

    try:
        fits = [("table", fits_table(options.plan, options.budget_gib,
                                     sorted(context.finished.method.unique()), str(context.store)))]
    except Exception as exc:  # noqa: BLE001 - a bad report.plan costs its section, not the report
        fits = [("bullets", [f"Not planned: {first_line(exc)}"])]
    return [("h2", "What fits your budget"), *fits]


@SECTIONS.register("tables", title="Tables")
def tables_section(context: SectionContext) -> tuple[str, list]:
    items = [item for task, model in context.compared for item in write_tables(context, task, model)]
    return "Tables", items + fits_items(context)


@SECTIONS.register("figures", title="Figures")
def figures_section(context: SectionContext) -> tuple[str, list]:
    """Each (task, model)'s figures, written to figures/ (search trials only: their figure)."""
    a, items, fig_dir = context.analysis, [], context.out_dir / "figures"
    compared = set(context.compared)
    for task, model in context.pairs:
        figs = pair_figures(a, context.curves, task, model, fig_dir, context.lines)
        if (task, model) in compared:
            spent = cost.cost_figure(a, context.finished, task, model, fig_dir / f"{slug(task, model)}_cost_quality.png")
            figs += [(spent, COST_CAPTION + plots.capped_note(a, task, model))] if spent else []
        elif not figs:
            continue
        context.report.files += [p for p, _ in figs]
        items += [("h2", f"{task} — {model}"), ("figures", figs)]
    return "Figures", items


@SECTIONS.register("failed", title="Failed runs (not in any aggregate)")
def failed_section(context: SectionContext) -> tuple[str, list]:
    """The failed runs with their errors, also written to failed_runs.csv."""
    failed = context.failed
    if not len(failed):
        return "Failed runs (not in any aggregate)", [("kv", [("Failed runs", "none in this selection")])]
    rows = [(f"{r.method} ({r.quant}, r={'—' if pd.isna(r.r) else int(r.r)}, seed {r.seed}) on {r.task}",
             str(r.error)) for r in failed.itertuples()]
    failed.to_csv(context.out_dir / "failed_runs.csv", index=False)
    context.report.files.append(context.out_dir / "failed_runs.csv")
    return "Failed runs (not in any aggregate)", [("kv", rows)]


@SECTIONS.register("statistics", title="How the statistics were computed")
def statistics_section(context: SectionContext) -> tuple[str, list]:
    return "How the statistics were computed", statistics_text(context.analysis)


@SECTIONS.register("claims", title="Published claims")
def claims_section(context: SectionContext) -> tuple[str, list]:
    """A verdict on each published claim (conf/claims and ``report.claims_dirs``) from the
    selected runs (:mod:`harness.report.verdicts`)."""
    from harness.report.claimfile import load_claims
    from harness.report.select import run_predictions
    from harness.report.verdicts import claim_items, judge_claims

    a = context.analysis
    verdicts = judge_claims(load_claims(context.options.claims_dirs), a.per_run,
                            run_predictions(context.finished, context.predictions), context.curves,
                            a.alpha, a.confidence)
    return "Published claims", claim_items(verdicts)
