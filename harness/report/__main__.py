"""Write a report from the results store.

    python -m harness.report [--store URL] [--out DIR] [--sweep LABEL|latest] [--task T,...]
                             [--model M,...] [--method M,...] [--quant Q,...] [--r R,...]
                             [--seed S,...] [--since DATE] [--until DATE]
                             [--stage final|search|all] [--reference lora]
                             [--format md,csv,tex,html] [--claim 'dora>lora'] [--no-pdf]
                             [--claims] [--claims-dir DIR]
                             [--price cpu=0.05 --price cuda=2.5] [--currency USD]

Comma-separated values select any of them. --stage: final (default) reports the final runs of
protocol=tuned and every protocol=fixed run, never the learning-rate search trials; search only
those; all every run. --price: the price of one hour of a device kind (repeatable), so that the
cost view gives each run's money (wall time x price; none for a kind without a price). See
docs/report.md.
"""
from __future__ import annotations

import argparse
import sys

from harness.config import ConfigError, ReportConfig
from harness.report.build import ReportError, build_report, claim_verdicts
from harness.report.select import AXES, STAGES, Selection, latest_sweep
from harness.report.verdicts import verdict_lines
from harness.results import DEFAULT_STORE, StoreError, load


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=DEFAULT_STORE, help=f"results store URL or path (default {DEFAULT_STORE})")
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    for axis in AXES:
        p.add_argument(f"--{axis}", default=None, help=f"keep runs whose {axis} is one of these (comma-separated)"
                       + ("; 'latest' for the most recent sweep" if axis == "sweep" else ""))
    p.add_argument("--since", default=None, help="keep runs created at or after this ISO date/time")
    p.add_argument("--until", default=None, help="keep runs created up to this ISO date/time")
    p.add_argument("--stage", default="final", choices=STAGES,
                   help="final (default): final runs of protocol=tuned and protocol=fixed runs; "
                        "search: only the learning-rate search trials; all: every run")
    p.add_argument("--reference", default="lora", help="method every other is compared with (default lora)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--correction", default="holm", help="multiple-comparison correction: holm | none")
    p.add_argument("--format", default="md,csv,tex,html", help="table formats (md,csv,tex,html)")
    p.add_argument("--claim", action="append", default=[],
                   help="a claim to check, 'dora>lora' or 'dora>lora:accuracy' (repeatable)")
    p.add_argument("--claims", action="store_true",
                   help="print only the verdicts on the published claims (conf/claims) and write nothing")
    p.add_argument("--claims-dir", action="append", default=[], metavar="DIR",
                   help="a folder of claim files besides the shipped ones (repeatable)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    p.add_argument("--price", action="append", default=[], metavar="KIND=PRICE",
                   help="price of one hour of a device kind (cpu, cuda), e.g. cpu=0.05 (repeatable): "
                        "money per run in the cost view")
    p.add_argument("--currency", default="USD", help="currency of --price (default USD)")
    p.add_argument("--plan", default=None, metavar="OVERRIDES",
                   help='add "what fits your budget": the memory planner for the compared methods on '
                        'this run, e.g. "model=qwen trainer.device=cuda trainer.batch_size=8"')
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import a plug-in first (a report section, a metric, a store backend); "
                        "installed plug-ins (entry point peft_harness.plugins) load always")
    p.add_argument("--budget-gib", type=float, default=None, help="with --plan: mark what fits in this many GiB")
    return p


def _prices(items: list[str]) -> dict[str, float]:
    """{kind: price} from --price KIND=PRICE (the kinds and prices are checked by CostConfig)."""
    prices = {}
    for item in items:
        kind, _, price = item.partition("=")
        try:
            prices[kind.strip()] = float(price)
        except ValueError:
            raise ConfigError(f"--price must be KIND=PRICE, e.g. cpu=0.05; got {item!r}") from None
    return prices


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from harness.job.plugins import load_plugins

        load_plugins(args.plugin)
        options = ReportConfig(reference=args.reference, alpha=args.alpha, correction=args.correction,
                               formats=_split(args.format), pdf=not args.no_pdf, claims=args.claim,
                               cost={"per_device_hour": _prices(args.price), "currency": args.currency},
                               plan=args.plan, budget_gib=args.budget_gib, claims_dirs=args.claims_dir)
        values = {axis: _split(getattr(args, axis)) for axis in AXES}
        if values["sweep"] == ["latest"]:
            values["sweep"] = [latest_sweep(load(args.store, decode=False)) or "latest"]
        selection = Selection(values, args.since, args.until, args.stage)
        if args.claims:
            print("\n".join(verdict_lines(claim_verdicts(args.store, selection, options))))
            return 0
        report = build_report(args.store, args.out, selection, options)
    except (ConfigError, ReportError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n, f = len(report.analysis.per_run), len(report.failed)
    print(f"[report] {n} finished runs, {f} failed; wrote {len(report.files)} files to {report.out_dir}"
          + (f" (PDF: {report.pdf})" if report.pdf else ""))
    d = len(report.analysis.duplicates)
    if d:
        print(f"[report] {d} duplicate finished row{'s' * (d != 1)} (same config_hash) left out; "
              "the latest of each configuration is kept")
    for key, sections in report.findings.items():
        print(f"\n[report] findings for {key[0]} ({key[1]}):")
        for heading, sentences in sections.items():
            for s in sentences:
                print(f"  - {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
