"""Which pairs of a table's configurations are tested: all of them, up to :data:`ALL_PAIRS_UP_TO`.

Every pair of a table's configurations is tested on every metric, and one metric's p-values form
one Holm family. A week of sweeps puts 60 to 120 configurations in a table: 1,800 to 7,000 pairs
per metric, ~200,000 tests in all, nearly all of which the report never prints, and a Holm family
of thousands of pairs in which nothing but huge differences could be significant. Above
:data:`ALL_PAIRS_UP_TO` configurations a table tests the pairs the report prints: each
configuration against its reference, the neighbours on the accuracy / peak-memory Pareto front
(the budget findings), and the pairs of the claims checked; Holm's correction runs over those.
The table's notes and the report's methods section say so (:func:`correction_text`).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.report.shown import pareto_front

ALL_PAIRS_UP_TO = 24  # configurations in a table up to which every pair is tested


@dataclass(frozen=True)
class Family:
    """The pairs one table tested: ``pairs`` (unordered label pairs; None: every pair)."""

    configurations: int
    pairs: frozenset | None = None

    def tests(self, a: str, b: str) -> bool:
        return self.pairs is None or frozenset((a, b)) in self.pairs


def family(labels: list[str], references: dict[str, str | None], means: dict[str, tuple[float, float]],
           claims: list = ()) -> Family:
    """The pairs of one table to test. ``references``: {label: its reference}; ``means``:
    {label: (mean peak memory, mean accuracy)}; ``claims``: the claims checked (winner, loser)."""
    if len(labels) <= ALL_PAIRS_UP_TO:
        return Family(len(labels))
    wanted = {frozenset((label, ref)) for label, ref in references.items() if ref and ref != label}
    front = pareto_front(means)
    wanted |= {frozenset(p) for p in zip(front, front[1:])}
    shown = set(labels)
    wanted |= {frozenset((c.winner, c.loser)) for c in claims
               if c.winner in shown and c.loser in shown and c.winner != c.loser}
    return Family(len(labels), frozenset(wanted))


def correction_text(correction: str, f: Family | None = None) -> str:
    """How a table's p-values were corrected, and over which pairs."""
    if correction != "holm":
        return "no multiple-comparison correction"
    if f is None or f.pairs is None:
        return "p-values Holm-corrected over all pairs per metric"
    return (f"p-values Holm-corrected per metric over the {len(f.pairs)} pairs tested: with "
            f"{f.configurations} configurations (more than {ALL_PAIRS_UP_TO}), a table tests each "
            "configuration against its reference, the neighbours on the Pareto front and the "
            "pairs of the claims checked, not every pair")


def methods_text(families: dict) -> list[str]:
    """The methods section's sentence where some table did not test every pair, else []."""
    capped = sorted(k for k, f in families.items() if f.pairs is not None)
    if not capped:
        return []
    return [f"Tables with more than {ALL_PAIRS_UP_TO} configurations ("
            + ", ".join(f"{t} — {m}" for t, m in capped) + ") do not test every pair of "
            "configurations: each configuration is tested against its reference, against its "
            "neighbours on the accuracy / peak-memory Pareto front and in the claims checked, and "
            "the Holm correction runs over those pairs only (a family of thousands of pairs, none "
            "of them printed, would let only huge differences be significant). The table's notes "
            "give the number of pairs tested."]
