"""Reading a user's data file as it comes: compressed (``data.csv.gz``, ``.bz2``, ``.xz``, a
``.zip`` of one file, through the standard library's decompressors, as pandas reads them), a
``.csv`` saved with another delimiter than the comma, and a ``.json`` that is one array of
objects rather than JSON Lines."""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import zipfile
from pathlib import Path

from harness.tasks.data import TaskDataError

class _ZipError(Exception):
    pass


def _zip_member(path):
    archive = zipfile.ZipFile(path)
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if len(names) != 1:
        raise _ZipError(f"holds {len(names)} files ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); "
                        f"a zipped data file must hold exactly one")
    return archive.open(names[0])


# A compressed text file is read through these (pandas reads the same suffixes itself).
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": _zip_member}


def file_kind(path) -> tuple[str, str | None]:
    """(the table's suffix, the compression's or None): ``data.csv.gz`` -> (".csv", ".gz")."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        return (suffixes[-2] if len(suffixes) > 1 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), None


def open_bytes(path: Path, name: str):
    """The file's bytes, decompressed where its suffix says so; a ``.zip`` that does not hold
    exactly one file is refused (naming task ``name``)."""
    compression = file_kind(path)[1]
    if compression is None:
        return open(path, "rb")
    try:
        return COMPRESSED[compression](path)
    except (_ZipError, zipfile.BadZipFile) as exc:
        raise TaskDataError(f"task {name}: {path} {exc if isinstance(exc, _ZipError) else 'is not a zip file'}") from None



# What a .csv whose first line holds no comma is tried with (Excel saves ";" where "," is the
# decimal mark); the first of these the first line holds is taken, as csv.Sniffer finds it.
OTHER_DELIMITERS = ";\t|"
DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


def sniff_delimiter(path: Path, name: str) -> str | None:
    """The delimiter of a .csv whose first line holds no comma but one of :data:`OTHER_DELIMITERS`
    (csv.Sniffer over its first lines), else None (read with commas)."""
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig") as fh:
        lines = [line for _, line in zip(range(20), fh)]
    if not lines or "," in lines[0] or not any(d in lines[0] for d in OTHER_DELIMITERS):
        return None
    try:
        return csv.Sniffer().sniff("".join(lines), delimiters=OTHER_DELIMITERS).delimiter
    except csv.Error:  # no consistent delimiter: the first one the first line holds
        return next(d for d in OTHER_DELIMITERS if d in lines[0])


def json_array(path: Path, name: str) -> list | None:
    """A ``.json`` file's records when it is one JSON array (its first character ``[``), checked:
    valid JSON, every element an object; None for JSON Lines."""
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig") as fh:
        text = fh.read()
    if not text.lstrip().startswith("["):
        return None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"task {name}: {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise TaskDataError(f"task {name}: element {bad + 1} of the array in {path} is not a JSON object "
                            f"({{\"column\": value, ...}}), it is a {type(records[bad]).__name__}")
    return records
