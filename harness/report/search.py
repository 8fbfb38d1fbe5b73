"""The learning-rate searches of ``protocol=tuned`` (:mod:`harness.sweep.protocol`), as the report shows them.

Each grid point's search is the set of search trials sharing a ``search_id``: one run per rate,
on the search seed, each with its validation value ``select_value`` of ``select_metric``. The
rate chosen is the final runs' rate where the store holds them, else the one the protocol picks
(best validation value; ties: the lower rate), so the figure marks the rate the table's runs
trained at.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from harness import fields
from harness.report.aggregate import GROUP, group_labels
from harness.report.compare import rate_text
from harness.report.select import stages


@dataclass
class Search:
    task: str
    model: str
    label: str  # the configuration's label, as in the tables
    search_id: str
    metric: str  # select_metric: the validation metric the rates were compared on
    points: pd.DataFrame  # finished trials: lr, value (sorted by lr)
    failed: list[float] = field(default_factory=list)  # rates whose trial failed
    chosen: float | None = None
    chosen_by: str = ""  # "final runs" | "best validation value" | "" (nothing to choose from)
    seeds: list[int] = field(default_factory=list)
    name: str = ""  # the line's legend: the label, plus the search id where a label has several

    @property
    def chosen_value(self) -> float | None:
        hit = self.points[self.points.lr == self.chosen] if self.chosen is not None else self.points.iloc[:0]
        return float(hit.value.iloc[0]) if len(hit) else None

    def sentence(self) -> str:
        rates = ", ".join(rate_text(r) for r in self.points.lr)
        text = (f"searched {len(self.points)} rate{'s' * (len(self.points) != 1)} ({rates}) on "
                f"validation {self.metric}, seed {', '.join(map(str, self.seeds))}")
        if self.failed:
            text += (f"; {len(self.failed)} trial{'s' * (len(self.failed) != 1)} failed "
                     f"(lr {', '.join(rate_text(r) for r in self.failed)})")
        if self.chosen is None:
            return text + "; no rate could be chosen (no finished trial with a validation value)"
        value = self.chosen_value
        got = f" (validation {self.metric} {value:.4f})" if value is not None else ""
        how = "" if self.chosen_by == "final runs" else "; no final runs yet"
        return text + f"; chose {rate_text(self.chosen)}{got}{self.edge()}{how}"

    def edge(self) -> str:
        """Where the chosen rate is the grid's lowest or highest: the best may lie outside it."""
        rates = list(self.points.lr)
        if len(rates) < 2 or self.chosen not in (min(rates), max(rates)):
            return ""
        side = "lowest" if self.chosen == min(rates) else "highest"
        beyond = "below" if side == "lowest" else "above"
        return (f", the {side} rate searched: a better one may lie {beyond} the grid "
                f"(widen protocol.lr_factors or set protocol.lr_grid)")


def _choose(points: pd.DataFrame, metric: str) -> float | None:
    """The protocol's rule: the best validation value; ties: the lower rate."""
    best, best_value = None, None
    for lr, value in zip(points.lr, points.value):
        if value is None or math.isnan(value):
            continue
        try:
            wins = fields.better(metric, float(value), best_value)
        except (KeyError, ValueError):  # a metric this process does not know: higher is better
            wins = best_value is None or value > best_value
        if wins:
            best, best_value = float(lr), float(value)
    return best


def _labels(search: pd.DataFrame, per_run: pd.DataFrame) -> pd.Series:
    """The tables' label of each trial's configuration (computed afresh where no table row has it)."""
    frame = search[GROUP].copy()
    frame["r"] = frame["r"].astype("Int64")
    own = group_labels(frame)
    if per_run is None or per_run.empty:
        return own
    def keys(f: pd.DataFrame, extra: list[str] = []) -> list[tuple]:
        return [tuple(k) for k in f[GROUP + extra].astype(object).itertuples(index=False)]

    # one table row per configuration: a search belongs to the row of its final runs (same
    # search_id); else to the only row of its method, quant and r, if there is one
    by_search = ({k: l for k, l in zip(keys(per_run, ["search_id"]), per_run["label"]) if k[-1]}
                 if "search_id" in per_run.columns and "search_id" in search.columns else {})
    labels_of: dict[tuple, set] = {}
    for k, l in zip(keys(per_run), per_run["label"]):
        labels_of.setdefault(k, set()).add(l)
    known = {k: next(iter(ls)) for k, ls in labels_of.items() if len(ls) == 1}
    sids = search["search_id"] if "search_id" in search.columns else pd.Series(None, index=search.index)
    return pd.Series([by_search.get(k + (sid,), known.get(k, l))
                      for k, sid, l in zip(keys(frame), sids, own)], index=search.index, dtype=object)


def searches(search: pd.DataFrame, runs: pd.DataFrame, per_run: pd.DataFrame | None = None) -> list[Search]:
    """Every search among the search trials ``search`` (store rows, any status); ``runs`` is the
    whole store (its final runs tell which rate was chosen); ``per_run`` the tables' runs."""
    if search is None or search.empty:
        return []
    search = search.reset_index(drop=True).copy()
    search["label"] = _labels(search, per_run)
    search["search_id"] = search["search_id"].astype(object).where(search["search_id"].notna(), "")
    finals = runs[(stages(runs) == "final") & (runs["status"] == "finished")]
    out = []
    for (task, model, label, sid), g in search.groupby(["task", "model", "label", "search_id"], sort=True):
        done = g[g.status == "finished"]
        metric = next((str(m) for m in done.get("select_metric", pd.Series(dtype=object)).dropna()), "")
        points = (pd.DataFrame({"lr": pd.to_numeric(done.lr, errors="coerce"),
                                "value": pd.to_numeric(done.select_value, errors="coerce")})
                  .dropna().groupby("lr", as_index=False)["value"].mean().sort_values("lr"))
        failed = sorted(float(r) for r in
                        pd.to_numeric(g[g.status != "finished"].lr, errors="coerce").dropna())
        mine = (finals[finals["search_id"].astype(object) == sid]["lr"].dropna() if sid
                else pd.Series([], dtype=float))
        if len(mine):
            chosen, how = float(mine.mode().iloc[0]), "final runs"
        else:
            chosen = _choose(points, metric) if metric else None
            how = "best validation value" if chosen is not None else ""
        seeds = sorted({int(s) for s in g.seed.dropna()})
        out.append(Search(str(task), str(model), str(label), str(sid), metric, points.reset_index(drop=True),
                          failed, chosen, how, seeds))
    # one configuration searched more than once (other settings differ): tell the lines apart
    counts = Counter((s.task, s.model, s.label) for s in out)
    for s in out:
        several = counts[(s.task, s.model, s.label)] > 1
        s.name = f"{s.label} [search {s.search_id[:8]}]" if several else s.label
    return out
