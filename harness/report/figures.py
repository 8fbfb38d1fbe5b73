"""The figures of one (task, model): quality against cost, curves, rank and 4-bit views, the
learning-rate search, each with its caption (the Figures section of the report)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report import plots
from harness.report.compare import Analysis

COST_CAPTION = ("Accuracy against training time (and against energy where the runs measured it): "
                "mean per configuration, error bars the 95% intervals over seeds; dashed: the Pareto front "
                "(none on energies of different kinds: a CPU package and a GPU are not one scale).")


def slug(*parts: str) -> str:
    """A file name from a (task, model): 'synthetic__tiny_bert'."""
    return "__".join("".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(p)) for p in parts)


def search_figure(lines: list, task: str, model: str, fig_dir: Path) -> list[tuple[Path, str]]:
    metrics = ", ".join(dict.fromkeys(l.metric for l in lines if (l.task, l.model) == (task, model)))
    path = plots.lr_search(lines, task, model, fig_dir / f"{slug(task, model)}_lr_search.png")
    return [] if path is None else [(path, (
        f"Learning-rate search (protocol=tuned): validation {metrics} of each search trial against "
        "its learning rate (log scale), one line per configuration; star: the chosen rate, at which "
        "the final runs trained. Search trials enter the tables only with --stage search or all."))]


def pair_figures(a: Analysis, curves: pd.DataFrame, task: str, model: str, fig_dir: Path,
                 lines: list | None = None) -> list[tuple[Path, str]]:
    """The figures of one (task, model), written to ``fig_dir``: [(path, caption)]."""
    if not len(a.runs(task, model)):  # only search trials here: their figure alone
        return search_figure(lines or [], task, model, fig_dir)
    s = slug(task, model)
    made = [
        (plots.quality_vs_cost(a, task, model, "peak_memory_mib", "accuracy", fig_dir / f"{s}_pareto_memory.png"),
         "Accuracy vs peak memory; dashed: Pareto front (no other configuration is both cheaper and "
         "better). Error bars: 95% CI over seeds."),
        (plots.quality_vs_cost(a, task, model, "trainable_params", "accuracy",
                               fig_dir / f"{s}_pareto_params.png", log_x=True),
         "Accuracy vs trainable parameters (log scale), with the Pareto front."),
        (plots.quality_vs_cost(a, task, model, "train_flops", "accuracy",
                               fig_dir / f"{s}_pareto_flops.png", log_x="auto"),
         "Accuracy vs training compute (each run's counted training step times its optimizer steps; "
         "a log scale where it spans ten times or more), with the Pareto front: the configurations that buy their accuracy with the "
         "least arithmetic. MFU, the share of the device's peak each run used, is in the cost table."),
        (plots.quality_vs_cost(a, task, model, "forgetting", "accuracy", fig_dir / f"{s}_pareto_forgetting.png"),
         "Accuracy vs forgetting (causal LMs: the mean token loss on general text after training minus "
         "before; lower is better, negative: improved), with the Pareto front: the configurations that "
         "gain the task while losing the least of what the model knew. Only where the runs measured it."),
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
    return ([(p, c + plots.capped_note(a, task, model)) for p, c in made if p is not None]
            + search_figure(lines or [], task, model, fig_dir))
