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
import shlex
import sys
import zipfile
import zlib
from pathlib import Path

from harness.tasks.data import TaskDataError


class _ZipError(Exception):
    pass


def _zip_member(path):
    archive = zipfile.ZipFile(path)
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if len(names) != 1:
        archive.close()
        raise _ZipError(f"holds {len(names)} files ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); "
                        f"a zipped data file must hold exactly one")
    try:
        return archive.open(names[0])
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, or a method zipfile cannot read
        archive.close()
        raise _ZipError(f"cannot be read: {exc}") from None


# A compressed text file is read through these, and pandas is given the stream they open (so the
# harness and pandas read the same member of a .zip).
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": _zip_member}
# What a cut or corrupt compressed file raises while it is read.
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, zlib.error, RuntimeError,
               NotImplementedError)


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
        why = exc if isinstance(exc, _ZipError) else "is not a zip file"
        raise TaskDataError(f"task {name}: {path} {why}") from None


def unreadable(name: str, path: Path, exc: Exception) -> TaskDataError:
    """The error for a compressed file that is cut or corrupt (one of :data:`READ_ERRORS`)."""
    return TaskDataError(f"task {name}: cannot decompress {path}: {exc}")


def numbered_lines(path: Path, name: str = "data"):
    """(line number, line) of every non-blank line of a UTF-8 text file (decompressed)."""
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, line


# What a .csv whose first record holds no comma is tried with (Excel saves ";" where "," is the
# decimal mark); the one csv.Sniffer finds, else the first of these the first record holds.
OTHER_DELIMITERS = ";\t|"
DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


def sniff_delimiter(path: Path, name: str) -> str | None:
    """The delimiter of a .csv whose first record, read with commas, is one field holding one of
    :data:`OTHER_DELIMITERS` (csv.Sniffer over its first lines), else None (read with commas). The
    first record, not the first line: a quoted text may hold a line break before its comma, and
    may be a document longer than any sample."""
    _long_fields()
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig", newline="") as fh:
        try:
            first = next(csv.reader(fh), [])
        except csv.Error:  # a NUL byte, say: pandas reads it with commas and says what is wrong
            return None
    if len(first) != 1 or not any(d in first[0] for d in OTHER_DELIMITERS):
        return None
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig") as fh:
        lines = fh.read(1 << 16).splitlines(keepends=True)[:20]
    try:
        return csv.Sniffer().sniff("".join(lines), delimiters=OTHER_DELIMITERS).delimiter
    except csv.Error:  # no consistent delimiter: the first one the first record holds
        return next(d for d in OTHER_DELIMITERS if d in first[0])


def _long_fields() -> None:
    """Let Python's csv reader read a field as long as a document (131,072 characters by default)."""
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))


def starts_an_array(path: Path, name: str) -> bool:
    """Whether a ``.json`` file's first non-blank character is ``[`` (one JSON array, not JSON
    Lines); reads no further than that character."""
    try:
        with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig", errors="replace") as fh:
            while chunk := fh.read(1 << 12):
                if chunk.strip():
                    return chunk.lstrip().startswith("[")
    except READ_ERRORS as exc:
        raise unreadable(name, path, exc) from None
    return False


def json_array(path: Path, name: str) -> list:
    """A ``.json`` file's records when it is one JSON array (:func:`starts_an_array`), checked:
    valid JSON, every element an object."""
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig") as fh:
        text = fh.read()
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"task {name}: {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    except RecursionError:
        raise TaskDataError(f"task {name}: {path} nests arrays or objects too deeply to be a table "
                            f"(a JSON array of {{\"column\": value, ...}} objects)") from None
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise TaskDataError(f"task {name}: element {bad + 1} of the array in {path} is not a JSON object "
                            f"({{\"column\": value, ...}}), it is a {type(records[bad]).__name__}")
    return records


def check_quotes(path: Path, name: str, delimiter: str) -> None:
    """Refuse a CSV/TSV in which a value begins with a double quote that does not enclose it whole:
    pandas would join the lines up to the next quote into one text (a TSV of 60 rows read as 39)
    or drop the quotes from it, silently. Python's csv reader, strict, over the whole file."""
    _long_fields()
    with io.TextIOWrapper(open_bytes(path, name), encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        start = 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error as exc:
            shown = DELIMITER_NAMES.get(delimiter, repr(delimiter))
            what = ("is never closed, so the rest of the file would be read as one text"
                    if "end of data" in str(exc) else "closes before the value ends, so the value would "
                    "lose its quotes or run on over the lines up to the next quote")
            raise TaskDataError(
                f"task {name}: line {start} of {path} ({shown}-separated): a value begins with a double "
                f"quote that {what}; "
                f"if the texts hold double quotes as written (a file saved without quoting), set "
                f"task.quoting=none, else quote the whole value and double its own quotes (\"\"), as "
                f"spreadsheet programs and pandas' to_csv write it") from None


def encoding_hint(raw: bytes, start: int, at: int, path: Path) -> str:
    """What a file that is not UTF-8 likely is, and how to make it UTF-8: Excel saves "Unicode
    Text" as UTF-16 (its byte-order mark first) and "CSV" on Windows as Windows-1252."""
    def convert(encoding: str) -> str:  # quoted for a shell; a compressed file cannot be converted so
        if file_kind(path)[1]:
            return ""
        return (f", or convert it: iconv -f {encoding} -t UTF-8 {shlex.quote(str(path))} > "
                f"{shlex.quote(str(path.with_name('utf8-' + path.name)))}")
    if at == 0 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return (f"; it starts with a UTF-16 byte-order mark (as Excel saves 'Unicode Text'): save it as "
                f"UTF-8 ('CSV UTF-8'){convert('UTF-16')}")
    guess = raw[start:start + 1].decode("cp1252", errors="replace")
    if guess == "\ufffd":
        return "; save the file as UTF-8"
    return (f" (it would be {guess!r} in Windows-1252, as Excel saves 'CSV' on Windows): save the file as "
            f"UTF-8 ('CSV UTF-8'){convert('WINDOWS-1252')}")
