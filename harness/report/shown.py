"""Which configurations a figure draws, and the Pareto front they are judged by.

A figure with a marker, bar or line per configuration tells about ten configurations apart (ten
colours, a marker each); a week of sweeps puts 60 to 120 in one table, which no legend can name,
and drawing them all took a third of the report's time. Above :data:`ALL_DRAWN_UP_TO`
configurations a figure draws those on its Pareto front, the best configuration of the
reference method and the most accurate others, up to :data:`MAX_SHOWN` (the front is drawn
whole even if longer), and the caption says so (:func:`capped_note`); every configuration stays
in the tables, the CSV and the findings. Smaller tables are drawn whole, as before.
"""
from __future__ import annotations

import math

ALL_DRAWN_UP_TO = 20  # configurations in a table up to which a figure draws every one
MAX_SHOWN = 12  # above that, the configurations a figure draws besides its Pareto front


def pareto_front(points: dict[str, tuple[float, float]], y_higher: bool = True) -> list[str]:
    """Labels not dominated in (x lower is better, y higher is better), sorted by x."""
    sign = 1 if y_higher else -1
    front = []
    for l, (x, y) in points.items():
        dominated = any(x2 <= x and sign * y2 >= sign * y and (x2 < x or sign * y2 > sign * y)
                        for l2, (x2, y2) in points.items() if l2 != l)
        if not dominated:
            front.append(l)
    return sorted(front, key=lambda l: points[l][0])


def _quality(analysis, task: str, model: str, label: str) -> float:
    mean = (analysis.lookup.stat(task, model, label, "accuracy") or {}).get("mean")
    return -math.inf if mean is None or math.isnan(mean) else float(mean)


def figure_labels(analysis, task: str, model: str, front: list[str] = ()) -> list[str]:
    """The configurations a figure of this table draws, in table order: all of them up to
    :data:`ALL_DRAWN_UP_TO`; else ``front`` (that figure's Pareto front), the most accurate
    configuration of the reference method, then the most accurate others, until
    :data:`MAX_SHOWN`."""
    labels = analysis.labels(task, model)
    if len(labels) <= ALL_DRAWN_UP_TO:
        return labels
    best = sorted(labels, key=lambda l: -_quality(analysis, task, model, l))
    references = {ref for (t, m, _), ref in analysis.references.items() if (t, m) == (task, model)}
    keep = set(front) | set([l for l in best if l in references][:1])  # the best reference
    for label in best:
        if len(keep) >= MAX_SHOWN:
            break
        keep.add(label)
    return [l for l in labels if l in keep]


def capped_note(analysis, task: str, model: str) -> str:
    """The caption's sentence where this table's figures leave configurations out, else ''."""
    n = len(analysis.labels(task, model))
    if n <= ALL_DRAWN_UP_TO:
        return ""
    return (f" This table has {n} configurations, too many to tell apart in one figure: a figure "
            f"with one marker, bar or line per configuration draws {MAX_SHOWN} of them (the reference "
            f"method's best and the most accurate) and every one on its Pareto front; "
            f"the other configurations are in the tables, the CSV and the findings.")
