"""The comparison table of one task, and its renderings: Markdown, CSV, LaTeX, HTML.

A table is built once as text cells (mean, ± std, a significance mark, whether it is the best in
its column) and every format renders those same cells, so the PDF, the Markdown and the LaTeX
show the same numbers. The CSV holds every number behind the table, unrounded. The comparison
table also gives each configuration's learning rate (flagged ``MIXED`` where its runs do not share
one) and, in notes, its runs' budget (:mod:`harness.report.budget`) and its baselines.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report.aggregate import METRICS, Metric, format_value
from harness.report.baselines import baseline_notes
from harness.report.compare import Analysis, is_nan, stat
from harness.report.evidence import (DIFFERENCES_NOTE, baseline_tests, difference_cells, integrity_notes,
                                     tests_used)
from harness.report.family import correction_text
from harness.report.stats import EXACT


def signed(x: float) -> str:
    return f"{x:+.4f}" if abs(x) < 10 else f"{x:+,.0f}"

FORMATS = ("md", "csv", "tex", "html")
NOT_SIGNIFICANT = "†"
UNTESTED = "‡"
MIXED = "MIXED"  # in the LR column: the row's runs trained at different learning rates


@dataclass
class Cell:
    mean: str
    spread: str = ""  # "± std", or why there is none
    mark: str = ""
    best: bool = False

    def text(self) -> str:
        return " ".join(p for p in (self.mean + self.mark, self.spread) if p)


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


def _mark(analysis: Analysis, task: str, model: str, label: str, metric: str) -> str:
    c = analysis.versus_reference(task, model, label, metric)
    if c is None:
        return ""
    if is_nan(c.p) and c.test != EXACT:
        return UNTESTED
    return "" if c.significant(analysis.alpha) else NOT_SIGNIFICANT


def _best_labels(analysis: Analysis, task: str, model: str, labels: list[str], m: Metric) -> set[str]:
    means = {l: (stat(analysis, task, model, l, m.name) or {}).get("mean") for l in labels}
    means = {l: v for l, v in means.items() if not is_nan(v)}
    if len(means) < 2:
        return set()
    best = max(means.values()) if m.higher_is_better else min(means.values())
    return {l for l, v in means.items() if v == best}


def _cell(s: dict | None, m: Metric) -> Cell:
    if s is None:
        return Cell("—")
    spread = "(n=1)" if s["n"] < 2 else f"± {format_value(s['std'], m.digits)}"
    return Cell(format_value(s["mean"], m.digits), spread)


def shown_metrics(analysis: Analysis, task: str, model: str) -> list[Metric]:
    """The report metrics some run of this task and model has (accuracy always, first)."""
    return [m for m in METRICS if m.name == "accuracy" or any(not is_nan(
        (stat(analysis, task, model, l, m.name) or {}).get("mean", float("nan"))) for l in analysis.labels(task, model))]


def comparison_table(analysis: Analysis, task: str, model: str) -> Table:
    labels = analysis.labels(task, model)
    metrics = shown_metrics(analysis, task, model)
    headers = ["Method", "n", "LR"] + [f"{m.label} {m.arrow}" for m in metrics] + ["Above majority?"]
    best = {m.name: _best_labels(analysis, task, model, labels, m) for m in metrics}
    base = analysis.baseline
    rows, mixed = [], []
    for label in labels:
        ref = analysis.references.get((task, model, label))
        name = f"{label} (reference)" if label == ref else label
        n = (stat(analysis, task, model, label, "accuracy") or {}).get("n", 0)
        rates = analysis.rates(task, model, label)
        if rates.mixed:
            mixed.append(label)
        row = [Cell(name), Cell(str(n)), _rate_cell(rates)]
        for m in metrics:
            cell = _cell(stat(analysis, task, model, label, m.name), m)
            cell.mark = _mark(analysis, task, model, label, m.name) if cell.mean != "—" else ""
            cell.best = label in best[m.name]
            row.append(cell)
        check = base[(base.task == task) & (base.model == model) & (base.label == label)].iloc[0]
        verdict = ("yes" if check.above else "NO") + (f", p={check.p:.2g}" if not is_nan(check.p) else
                                                      f" ({check.test})")
        row.append(Cell(verdict))
        rows.append(row)
    runs = analysis.per_run[(analysis.per_run.task == task) & (analysis.per_run.model == model)]
    majority = runs.drop_duplicates("seed")["majority_accuracy"].to_numpy()
    spread = f"± {format_value(float(np.std(majority, ddof=1)), 4)}" if len(majority) > 1 else ""
    rows.append([Cell("majority class"), Cell(str(len(majority))), Cell(""), Cell(format_value(
        float(np.mean(majority)), 4), spread)] + [Cell("—") for _ in metrics[1:]] + [Cell("")])
    ref_name = next((r for (t, mo, _), r in analysis.references.items() if (t, mo) == (task, model) and r), None)
    notes = [
        "Mean ± standard deviation over seeds; n = runs. ↑ higher is better, ↓ lower is better; "
        "bold: best in its column.",
        (f"{NOT_SIGNIFICANT}: not significantly different from the reference ({ref_name}); "
         f"{UNTESTED}: not tested (a side has n=1 and no per-example predictions to test on). "
         f"Tests: {tests_used(analysis, task, model)}; {_correction(analysis, task, model)}; "
         f"alpha = {analysis.alpha}. Each test's n (seeds, test examples), 95% interval and "
         f"settings check are in the differences table.") if ref_name else
        f"The reference method ({analysis.reference}) is not in this selection: no significance marks.",
        f"Above majority?: accuracy above the majority-class baseline of the same splits "
        f"({baseline_tests(analysis, task, model)}). Majority class row: accuracy of always "
        f"predicting the most common training label; it has no other metrics.",
        "LR: the learning rate the row's runs trained at (under protocol=tuned, the rate its "
        "validation search chose; see the findings).",
    ]
    if mixed:
        notes.append(f"{MIXED}: the runs of {', '.join(mixed)} did NOT share one learning rate; "
                     "those rows average over rates and are not one configuration's result "
                     "(report one stage, e.g. --stage final, or one rate).")
    notes += [f"Budget: {analysis.budget(task, model).sentence}", *baseline_notes(analysis.runs(task, model)),
              *integrity_notes(analysis, task, model)]
    return Table(f"{task} — {model}", headers, rows, notes)


def _rate_cell(rates) -> Cell:
    if rates.mixed:
        return Cell(f"{MIXED}: {rates.text(runs=True)}")
    return Cell(rates.text() if rates.counts else "—")


def _correction(analysis: Analysis, task: str | None = None, model: str | None = None) -> str:
    return correction_text(analysis.correction, analysis.families.get((task, model)))


def reference_table(analysis: Analysis, task: str, model: str, quality_only: bool = True) -> Table:
    """Each configuration minus its reference: difference, its 95% CI, test and p-values."""
    rows = []
    for m in METRICS:
        if quality_only and not m.quality:
            continue
        for label in analysis.labels(task, model):
            c = analysis.versus_reference(task, model, label, m.name)
            if c is None:
                continue
            ci = "—" if is_nan(c.ci_low) else f"[{signed(c.ci_low)}, {signed(c.ci_high)}]"
            p = "—" if is_nan(c.p) else f"{c.p:.3g}"
            pa = "—" if is_nan(c.p_adjusted) else f"{c.p_adjusted:.3g}"
            ref = analysis.references[(task, model, label)]
            sig = "yes" if c.significant(analysis.alpha) else "no"
            test, n, config, budget = difference_cells(c)
            rows.append([Cell(m.label), Cell(f"{label} − {ref}"), Cell(signed(c.diff)), Cell(ci),
                         Cell(test), Cell(n), Cell(p), Cell(pa), Cell(sig), Cell(config), Cell(budget)])
    headers = ["Metric", "Difference", "Effect", f"{int(analysis.confidence * 100)}% CI", "Test", "n",
               "p", "p adjusted", "Significant", "Same config?", "Same budget?"]
    return Table(f"{task} — {model}: differences from the reference", headers, rows,
                 [f"{_correction(analysis, task, model).capitalize()}; significant means p adjusted < {analysis.alpha}. "
                  + DIFFERENCES_NOTE])


def stats_frame(analysis: Analysis, task: str, model: str) -> pd.DataFrame:
    """Every number behind the table (for CSV): aggregates, each configuration's learning rate(s)
    (``lr``; ``lr_mixed`` where its runs do not share one), plus the comparison with the reference."""
    a = analysis.agg
    rows, rates_of, metrics = [], {}, {m.name: m for m in METRICS}
    for _, s in a[(a.task == task) & (a.model == model)].iterrows():
        m = metrics.get(s.metric)
        c = analysis.versus_reference(task, model, s.label, s.metric) if m else None
        rates = rates_of.setdefault(s.label, analysis.rates(task, model, s.label))
        rows.append({**s.to_dict(), "lr": rates.text(), "lr_mixed": rates.mixed,
                     "higher_is_better": m.higher_is_better if m else True,
                     "reference": analysis.references.get((task, model, s.label)),
                     "diff_vs_reference": c.diff if c else None, "test": c.test if c else None,
                     "p": c.p if c else None, "p_adjusted": c.p_adjusted if c else None,
                     "significant": c.significant(analysis.alpha) if c else None,
                     **{f"{k}_vs_reference" if k in ("ci_low", "ci_high") else k: getattr(c, k) if c else None
                        for k in ("ci_low", "ci_high", "n_seeds", "n_examples", "same_config",
                                  "config_diff", "same_budget", "budget_diff", "versions", "note")}})
    return pd.DataFrame(rows)


def to_markdown(table: Table) -> str:
    def fmt(c: Cell) -> str:
        t = c.text().replace("|", "\\|")
        return f"**{t}**" if c.best else t
    lines = [f"### {table.title}", "", "| " + " | ".join(table.headers) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines + [""] + [f"{n}  " for n in table.notes]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "†": r"\dag{}", "‡": r"\ddag{}",
        "—": "---", "−": "$-$"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    cols = "l" + "r" * (len(table.headers) - 1)
    body = [" & ".join((rf"\textbf{{{_tex(c.text())}}}" if c.best else _tex(c.text())) for c in row)
            + r" \\" for row in table.rows]
    return "\n".join([r"\begin{table}[ht]", r"\centering\small", rf"\begin{{tabular}}{{{cols}}}",
                      r"\toprule", " & ".join(_tex(h) for h in table.headers) + r" \\", r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}",
                      rf"\caption{{{_tex(table.title)}. {_tex(' '.join(table.notes))}}}",
                      r"\end{table}", ""])


def to_html(table: Table) -> str:
    def td(c: Cell) -> str:
        t = html.escape(c.text())
        return f"<td><strong>{t}</strong></td>" if c.best else f"<td>{t}</td>"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.headers)
    body = "\n".join("<tr>" + "".join(td(c) for c in row) + "</tr>" for row in table.rows)
    notes = "".join(f"<p>{html.escape(str(n))}</p>" for n in table.notes)
    return (f"<table class=\"harness-report\">\n<caption>{html.escape(str(table.title))}</caption>\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n{notes}\n")


def html_page(title: str, body: str) -> str:
    """A whole HTML page around ``body`` (already escaped, :func:`to_html`); the title is escaped
    here, as every text of the report's HTML is: a method or task name is data, never markup."""
    return HTML_PAGE.format(title=html.escape(title), body=body)


HTML_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; }} table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 3px 6px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} caption {{ font-weight: bold; }}
</style></head><body>
{body}</body></html>
"""
