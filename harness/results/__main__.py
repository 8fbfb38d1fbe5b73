"""List or export the results store.

    python -m harness.results list   [--store URL] [--status finished|failed]
    python -m harness.results export --out FILE.csv|FILE.parquet [--curves] [--store URL]
    python -m harness.results import FOLDER [FOLDER ...] [--store URL]
    python -m harness.results copy SOURCE TARGET [--status finished|failed]

``import`` records the runs that finished but could not be written to the store (a full disk, a
read-only file, a lock held too long): each is kept in its run folder as ``unrecorded.json``, found
here under the folders given, recorded, and renamed ``unrecorded.imported.json``. A run the store
already has is not recorded twice.

``copy`` copies runs (rows, curves, predictions) from the store SOURCE into TARGET, which is made
if needed; runs TARGET already has are skipped, so nothing is ever there twice.

--store, SOURCE and TARGET take a store's URL: a path or sqlite:///path for an SQLite file,
postgresql://user@host/database for a PostgreSQL database.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from harness.fields import LiveList, listed_columns
from harness.results import DEFAULT_STORE, StoreError, load, load_curves

# The fields declared with listed=True (harness/fields.py), in table order.
LIST_COLUMNS = LiveList(listed_columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "export"):
        p = sub.add_parser(name)
        p.add_argument("--store", default=DEFAULT_STORE, help=f"store URL or path (default {DEFAULT_STORE})")
        p.add_argument("--status", choices=["finished", "failed"], default=None)
        if name == "export":
            p.add_argument("--out", required=True, help="output file ending in .csv or .parquet")
            p.add_argument("--curves", action="store_true", help="export the per-epoch curves instead")
    p = sub.add_parser("copy")
    p.add_argument("source", help="the store to copy from (URL or path)")
    p.add_argument("target", help="the store to copy into (URL or path; made if needed)")
    p.add_argument("--status", choices=["finished", "failed"], default=None)
    p = sub.add_parser("import")
    p.add_argument("folders", nargs="+", help="folders searched for unrecorded.json files")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"store URL or path (default {DEFAULT_STORE})")
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            return import_unrecorded(args.folders, args.store)
        if args.command == "copy":
            from harness.results.copy import copy_runs
            from harness.results.store import redact

            copied, there = copy_runs(args.source, args.target, args.status)
            print(f"copied {copied} run(s) into {redact(args.target)}"
                  + (f"; {there} were there already" if there else ""))
            return 0
        if args.command == "list":
            df = load(args.store, status=args.status, decode=False)
            if df.empty:
                from harness.results.store import redact

                print(f"{redact(args.store)}: no runs")
                return 0
            with pd.option_context("display.width", 200, "display.max_columns", None,
                                   "display.max_colwidth", 40):
                print(df[[c for c in LIST_COLUMNS if c in df.columns]].to_string(index=False))
            return 0
        df = load_curves(args.store) if args.curves else load(args.store, status=args.status, decode=False)
        if args.out.endswith(".csv"):
            df.to_csv(args.out, index=False)
        elif args.out.endswith(".parquet"):
            df.to_parquet(args.out, index=False)
        else:
            parser.error(f"--out must end in .csv or .parquet, got {args.out!r}")
        print(f"wrote {len(df)} rows to {args.out}")
        return 0
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def import_unrecorded(folders: list[str], url: str) -> int:
    import json
    from pathlib import Path

    from harness.execution import arrays
    from harness.results import open_store
    from harness.results.store import redact

    files = sorted({f for folder in folders for f in
                    ([Path(folder)] if Path(folder).name == "unrecorded.json" else
                     Path(folder).rglob("unrecorded.json"))})
    if not files:
        print(f"no unrecorded.json under {', '.join(folders)}")
        return 0
    store = open_store(url)
    have = set(store.runs()["run_id"])
    imported = 0
    for f in files:
        kept = json.loads(f.read_text())
        if kept["row"]["run_id"] not in have:
            store.record(kept["row"], kept["curves"], arrays(kept.get("predictions") or {}))
            imported += 1
        f.replace(f.with_name("unrecorded.imported.json"))
    print(f"imported {imported} run(s) into {redact(url)}"
          + (f"; {len(files) - imported} were there already" if imported < len(files) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
