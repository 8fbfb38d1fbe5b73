"""Two runs side by side, example by example: the exact McNemar counts of their test examples at
the top (:func:`harness.report.mcnemar.mcnemar`, the test the report runs on two runs), then
every example on which their predictions differ, with its text, its label, each run's
prediction and, for a generation task, what each run wrote."""
from __future__ import annotations

from dash import dash_table, html

from harness.dashboard.examples import Side, disagreements, same_examples, side, test_texts
from harness.report.mcnemar import McNemar, mcnemar


def counts(a: Side, b: Side) -> tuple[McNemar, dict[str, int]]:
    """McNemar of ``b`` against ``a`` (difference: b minus a) and the four cells of the table."""
    test = mcnemar(a.right, b.right)
    both = int((a.right & b.right).sum())
    neither = int((~a.right & ~b.right).sum())
    return test, {"examples": test.n, "both right": both, "only A right": test.base_only,
                  "only B right": test.other_only, "both wrong": neither}


def _title(row: dict, letter: str) -> html.Div:
    r = "" if row.get("r") is None or row.get("r") != row.get("r") else f" r={int(row['r'])}"
    return html.Div([html.B(f"{letter}: {row['method']} ({row['quant']}{r}), seed {row['seed']}"),
                     html.Span(f" — {row['task']} / {row['model']} — run {row['run_id']}", className="muted")])


def header(test: McNemar, cells: dict[str, int], confidence: float = 0.95) -> html.Div:
    boxes = [html.Div([html.Div(str(v), className="count", id=f"mcnemar-{k.replace(' ', '-')}"),
                       html.Div(k, className="count-label")], className="count-box") for k, v in cells.items()]
    sentence = (f"Accuracy B − A = {test.diff:+.4f} ({confidence:.0%} CI [{test.ci_low:+.4f}, {test.ci_high:+.4f}]); "
                f"exact McNemar test on the {test.base_only + test.other_only} examples where exactly one is "
                f"right: p = {test.p:.4g}.")
    return html.Div([html.Div(boxes, className="counts"), html.P(sentence, id="mcnemar-sentence")])


def rows(a: Side, b: Side, where, texts: list[str] | None) -> list[dict]:
    out = []
    for i in where:
        row = {"example": int(i), "label": a.labels[i], "A": a.shown[i], "B": b.shown[i],
               "right": "A" if a.right[i] and not b.right[i] else "B" if b.right[i] and not a.right[i]
               else "both" if a.right[i] else "neither"}
        if texts is not None:
            row["text"] = texts[i]
        if a.generated is not None and b.generated is not None:
            row["A wrote"], row["B wrote"] = a.generated[i], b.generated[i]
        out.append(row)
    return out


def table(records: list[dict]) -> dash_table.DataTable:
    order = ["example", "text", "label", "A", "B", "A wrote", "B wrote", "right"]
    columns = [c for c in order if records and c in records[0]] or ["example", "label", "A", "B", "right"]
    return dash_table.DataTable(
        id="disagreements", data=records, columns=[{"name": c, "id": c} for c in columns], page_size=25,
        style_cell={"textAlign": "left", "whiteSpace": "normal", "height": "auto", "maxWidth": "560px",
                    "fontSize": "13px"},
        style_cell_conditional=[{"if": {"column_id": c}, "width": "70px"} for c in ("example", "right")],
        style_data_conditional=[{"if": {"filter_query": f'{{right}} = "{c}"', "column_id": c},
                                 "backgroundColor": "#dff0d8"} for c in ("A", "B")],
        sort_action="native", filter_action="native")


def page(row_a: dict | None, row_b: dict | None, arrays: dict) -> list:
    if row_a is None or row_b is None:
        return [html.P("Pick two runs: tick two rows of the runs table and press Compare, or choose them above.")]
    if row_a["run_id"] == row_b["run_id"]:
        return [html.P("These are the same run; pick another.")]
    out = [_title(row_a, "A"), _title(row_b, "B")]
    a, b = (side(r, arrays.get(r["run_id"], {})) for r in (row_a, row_b))
    missing = [x["run_id"] for x, s in ((row_a, a), (row_b, b)) if s is None]
    if missing:
        return out + [html.P(f"No per-example test predictions stored for run(s) {', '.join(missing)} "
                             f"(a failed run, or a store from before they were kept).", id="compare-note")]
    if not same_examples(a, b):
        return out + [html.P("The two runs were tested on different examples (another seed's split, or "
                             "other data): they cannot be compared example by example.", id="compare-note")]
    test, cells = counts(a, b)
    where = disagreements(a, b)
    texts, why = test_texts(row_a, a.reference)
    out += [header(test, cells),
            html.H4(f"{len(where)} test examples on which their predictions differ", id="disagree-count")]
    if why:
        out.append(html.P(f"Texts not shown: {why}.", className="note", id="texts-note"))
    return out + [table(rows(a, b, where, texts))]
