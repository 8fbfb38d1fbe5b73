"""List or export the results store.

    python -m harness.results list   [--store URL] [--status finished|failed]
    python -m harness.results export --out FILE.csv|FILE.parquet [--curves] [--store URL]
    python -m harness.results import FOLDER [FOLDER ...] [--store URL]
    python -m harness.results copy SOURCE TARGET [--status finished|failed]

``import`` records the runs that finished but could not be written to the store (a full disk, a
read-only file, a lock held too long): each is kept in its run folder as ``unrecorded.json``, found
here under the folders given, recorded, and renamed ``unrecorded.imported.json``. A run the store
already has is not recorded twice, nor a finished run of a configuration (config hash) the store
already holds finished (a failed run is recorded beside it); such files are renamed too, and the
summary counts them. Each file is checked first (:mod:`harness.results.checks`): one that is
malformed, whose config hash is not its config's, whose metrics are not finite or whose
predictions do not have its split's size is refused with one line on stderr and left where it
was, unrenamed; the good files of the same import are still recorded, and the exit code is 2 if
any file was refused.

``copy`` copies runs (rows, curves, predictions) from the store SOURCE into TARGET, which is made
if needed; runs TARGET already has, and finished runs of configurations it holds finished, are
skipped, so nothing is ever there twice. A source row that fails the same checks (the hash
aside) is refused with one line and not copied; the exit code is then 2.

A store that refuses the write (no INSERT right, a read-only file) is one line, ``error: ...``,
and exit code 2; the files not yet recorded stay as they were.

--store, SOURCE and TARGET take a store's URL: a path or sqlite:///path for an SQLite file,
postgresql://user@host/database for a PostgreSQL database.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from harness.fields import LiveList, listed_columns
from harness.results import DEFAULT_STORE, StoreError, load, load_curves
from harness.results.copy import backend_errors

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
            return copy_command(args.source, args.target, args.status)
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
    except backend_errors() as exc:  # a database's own refusal while reading: one line too
        from harness.errors import first_line
        from harness.results.store import redact

        print(f"error: {redact(first_line(exc))}", file=sys.stderr)
        return 2


def _skipped(there: int, duplicates: int) -> str:
    """The summary's tail: runs the store had by run_id, and finished configurations it had."""
    return ((f"; {there} were there already" if there else "")
            + (f"; {duplicates} skipped: a finished run of their configuration is there already"
               if duplicates else ""))


def copy_command(source: str, target: str, status: str | None) -> int:
    from harness.results.copy import copy_runs
    from harness.results.store import redact

    done = copy_runs(source, target, status)
    for line in done.refused:
        print(f"error: {line}", file=sys.stderr)
    print(f"copied {done.copied} run(s) into {redact(target)}" + _skipped(done.there, done.duplicates)
          + (f"; {len(done.refused)} refused" if done.refused else ""))
    return 2 if done.refused else 0


def unrecorded_files(folders: list[str]) -> list:
    """The ``unrecorded.json`` files under ``folders`` (or named by them), sorted; StoreError
    naming a folder that does not exist (a typo would otherwise import nothing, silently)."""
    from pathlib import Path

    missing = [folder for folder in folders if not Path(folder).exists()]
    if missing:
        raise StoreError(f"no such file or folder: {', '.join(missing)}")
    return sorted({f for folder in folders for f in
                   ([Path(folder)] if Path(folder).name == "unrecorded.json" else
                    Path(folder).rglob("unrecorded.json")) if f.is_file()})


def import_unrecorded(folders: list[str], url: str) -> int:
    """Record each good kept run and rename its file; a refused file is named on stderr and left
    as it was (exit 2). The store is opened at the first good file: refusing every file makes
    no store."""
    from collections import Counter

    from harness.results.checks import Refused, read_unrecorded
    from harness.results.copy import Target
    from harness.results.store import redact

    files = unrecorded_files(folders)
    if not files:
        print(f"no unrecorded.json under {', '.join(folders)}")
        return 0
    target, counts = None, Counter()
    for f in files:
        try:
            run = read_unrecorded(f)
        except Refused as exc:
            print(f"error: {f}: {exc}; not imported, left as it was", file=sys.stderr)
            counts["refused"] += 1
            continue
        target = target or Target(url)
        counts[target.add(*run)] += 1
        try:
            f.replace(f.with_name("unrecorded.imported.json"))
        except OSError as exc:  # recorded: the next import finds its run id in the store
            print(f"error: {f}: in the store, but not renamed ({exc.strerror})", file=sys.stderr)
            counts["unrenamed"] += 1
    print(f"imported {counts['added']} run(s) into {redact(url)}"
          + _skipped(counts["there"], counts["duplicate"])
          + (f"; {counts['refused']} file(s) refused" if counts["refused"] else ""))
    return 2 if counts["refused"] or counts["unrenamed"] else 0


if __name__ == "__main__":
    sys.exit(main())
