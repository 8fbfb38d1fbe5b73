"""The report's "what fits your budget" section: the memory planner (:mod:`harness.plan`) for
the methods the report compares, on a run the user names (``report.plan``, ``--plan``)."""
from __future__ import annotations

import shlex

from harness.report.tables import Cell, Table

SHOWN = ("method", "quant", "optimizer", "batch", "seq", "weights_GiB", "adapters_GiB", "gradients_GiB",
         "optimizer_GiB", "activations_GiB", "runtime_GiB", "paged_GiB", "total_GiB", "fits", "measured_samples_s")


def fits_table(plan: str, budget_gib: float | None, methods: list[str], store: str) -> Table:
    """Predicted peak training memory of each of ``methods`` on the run ``plan`` describes."""
    from harness.paths import conf_dir
    from harness.plan.__main__ import plan_table

    known = {p.stem for p in (conf_dir() / "method").glob("*.yaml")}
    chosen = [m for m in methods if m in known]
    frame = plan_table([*shlex.split(plan), f"method={','.join(chosen)}"], budget_gib, store)
    columns = [c for c in SHOWN if c in frame.columns]
    rows = [[Cell("" if v is None or v != v else f"{v:g}" if isinstance(v, float) else str(v)) for v in row]
            for row in frame[columns].itertuples(index=False)]
    title = f"What fits{f' {budget_gib:g} GiB' if budget_gib else ''}: {plan}"
    notes = ["Predicted by python -m harness.plan from the model's config (no weights): weights, adapters, "
             "gradients, optimizer states and the activations autograd keeps; paged optimizer states live "
             "outside PyTorch's allocator; on a CPU the runtime is this process's measured resident set, and the "
             "estimate is a lower bound (the allocator keeps memory the tensors freed). Its error on published GPU "
             "measurements: README, 'Will it fit?'."]
    notes += frame.attrs["notes"]
    left = sorted(set(methods) - set(chosen))
    if left:
        notes.append(f"Not planned (no method config of that name): {', '.join(left)}.")
    return Table(title, list(columns), rows, notes)
