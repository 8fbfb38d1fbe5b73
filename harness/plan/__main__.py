"""Which methods fit in N GiB: predicted peak training memory, per component, before any run.

    python -m harness.plan model=qwen method=lora,dora,qlora trainer.batch_size=8 task.max_length=512 trainer.device=cuda --budget-gib 24
    python -m harness.plan model.source=meta-llama/Llama-3.1-8B model.causal_lm=true task=rotten_tomatoes_prompt method=lora,qlora
    python -m harness.plan --validate [--store URL]      prediction error on the store's runs and on published measurements

The arguments are a run's overrides (comma lists give a table row each, as in a sweep): the
model (a harness model config, ``model.source=`` a hub id or a local folder, read from its
config only), the method, quantization, ``trainer.batch_size``, ``task.max_length``,
``trainer.optimizer``, ``trainer.gradient_checkpointing``, ``model.dtype``, ``trainer.device``.
Measured throughput is shown where the store has finished runs of the same method, model and
quantization. A bad override, a model config no model can be built from, an absurd batch or
length, or a budget that is not a positive number exits 2 with one line, before any model is
built (:mod:`harness.plan.inputs`).
"""
from __future__ import annotations

import argparse
import sys

from harness.plan import COMPONENTS, GIB, estimate, runtime_rss
from harness.plan.compose import configs
from harness.plan.inputs import budget, check_plannable


class _Parser(argparse.ArgumentParser):
    """Bad arguments in one line on stderr (argparse prints its usage first), exit 2."""

    def error(self, message: str):
        print(f"error: {message} (python -m harness.plan --help)", file=sys.stderr)
        sys.exit(2)


def measured_speed(store: str | None) -> dict:
    """(method, model, quant) -> median samples/s of the store's finished runs."""
    if not store:
        return {}
    from harness.results import StoreError, load

    try:
        runs = load(store, status="finished", decode=False)
    except StoreError:
        return {}
    if runs.empty:
        return {}
    return runs.groupby(["method", "model", "quant"])["train_samples_per_s"].median().dropna().to_dict()


def plan_table(overrides: list[str], budget_gib: float | None, store: str | None):
    import pandas as pd

    from harness.plan import _device

    planned = configs(overrides)
    for cfg in planned:  # every input no model can be built from, refused before one is built
        check_plannable(cfg)
    speed = measured_speed(store)
    rows, notes, runtime = [], [], runtime_rss()
    for cfg in planned:
        est = estimate(cfg, runtime=runtime if _device(cfg) == "cpu" else 0.0)
        row = {"method": cfg.method.name, "model": cfg.model.name, "quant": cfg.quant.name,
               "optimizer": cfg.trainer.optimizer.value, "batch": cfg.trainer.batch_size,
               "seq": cfg.task.max_length, "ckpt": cfg.trainer.gradient_checkpointing,
               "trainable_M": round(est.trainable / 1e6, 3)}
        row.update({f"{c}_GiB": round(getattr(est, c) / GIB, 3) for c in COMPONENTS})
        row["paged_GiB"] = round(est.paged / GIB, 3)
        row["total_GiB"] = round(est.total / GIB, 3)
        if budget_gib is not None:
            row["fits"] = "yes" if est.total / GIB <= budget_gib else "no"
        row["measured_samples_s"] = speed.get((cfg.method.name, cfg.model.name, cfg.quant.name))
        rows.append(row)
        notes += [f"{cfg.method.name}: {n}" for n in est.notes]
    frame = pd.DataFrame(rows)
    frame.attrs["notes"] = notes
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m harness.plan", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="a run's overrides; comma lists give several rows")
    parser.add_argument("--budget-gib", default=None, help="mark what fits in this much memory (a positive number)")
    parser.add_argument("--store", default="results/results.sqlite", help="the store read for measured speed "
                        "and for --validate")
    parser.add_argument("--validate", action="store_true",
                        help="prediction error on the store's finished runs and on published measurements")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad argument said in one line (2)
        return int(exc.code or 0)
    from harness.errors import ConfigError, first_line
    from harness.sweep.preflight import PreflightError
    from harness.results import StoreError

    import pandas as pd

    try:
        budget_gib = None if args.budget_gib is None else budget(args.budget_gib)
        with pd.option_context("display.width", 250, "display.max_columns", None):
            if args.validate:
                from harness.plan.check import validate_against_anchors, validate_against_store

                table = validate_against_store(args.store)
                print(table.to_string(index=False))
                if table.attrs.get("skipped"):
                    print(f"({table.attrs['skipped']} finished run(s) could not be planned and are left out)")
                print()
                print(validate_against_anchors().to_string(index=False))
                return 0
            table = plan_table(args.overrides, budget_gib, args.store)
            print(table.to_string(index=False))
            for note in table.attrs["notes"]:
                print(f"note: {note}")
            return 0
    except (ConfigError, PreflightError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a model config that cannot be read (an unknown hub id, offline)
        print(f"error: cannot read the model's config: {first_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
