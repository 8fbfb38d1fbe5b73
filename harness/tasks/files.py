"""Bring your own data: a CSV/TSV, JSON Lines or Parquet file, columns named in the task config.
The text types may come compressed (``data.csv.gz``, ``.bz2``, ``.xz``, or a ``.zip`` of one file).

``task.text_column`` (or several ``task.text_columns``, joined by a blank line), ``task.label_column``,
the columns the task type needs (``task.<column>_column`` for each of ``TaskType.columns``, e.g.
``task.choices_column``) and optionally ``task.split_column`` are renamed to what
:func:`harness.tasks.load_task` expects; everything else (label names, splits) is inferred there.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import json
from pathlib import Path

import pandas as pd

from harness.tasks.compressed import (COMPRESSED, DELIMITER_NAMES, READ_ERRORS, check_quotes, encoding_hint,
                                      file_kind, json_array, numbered_lines, open_bytes, sniff_delimiter,
                                      starts_an_array, unreadable)
from harness.tasks.conversations import conversation_hint, read_conversations
from harness.tasks.data import TASK_LOADERS, TaskDataError, data_path_hint
from harness.tasks.types import task_type

def _delimited(path, sep: str, header: bool = True, quotes: bool = True) -> pd.DataFrame:
    """A CSV/TSV read with delimiter ``sep``; ``header=False`` names the columns by position ("0",
    "1", ...); ``quotes=False`` reads double quotes as text."""
    frame = pd.read_csv(path, sep=sep, header=0 if header else None,
                        quoting=csv.QUOTE_MINIMAL if quotes else csv.QUOTE_NONE)
    return frame if header else frame.rename(columns=str)


READERS = {
    ".csv": _delimited,
    ".tsv": _delimited,
    ".jsonl": lambda p, **_: pd.read_json(p, lines=True),
    ".json": lambda p, **_: pd.read_json(p, lines=True),  # an array: json_array
    ".parquet": lambda p, **_: pd.read_parquet(p),
}
DELIMITED = {".csv": ",", ".tsv": "\t"}  # each with its default delimiter


def allowed_types() -> str:
    return (f"{', '.join(READERS)}; the text types also compressed "
            f"({', '.join(COMPRESSED)}, e.g. data.csv.gz)")


def data_file(cfg, example: str | None = None) -> Path:
    """``task.data_path`` as an existing file; relative paths are from the working directory.

    Without one, the error suggests ``example``, or else the example the loader was registered
    with (``data_path_hint``).
    """
    if not cfg.data_path:
        example = example or data_path_hint(cfg.loader, cfg.name) or "path/to/data"
        raise TaskDataError(f"task {cfg.name} needs a data file: set task.data_path={example}")
    path = Path(cfg.data_path).expanduser()
    if path.is_dir():
        raise TaskDataError(f"task {cfg.name}: task.data_path is a folder, not a data file: {path}")
    if not path.is_file():
        raise TaskDataError(f"task {cfg.name}: data file not found: {path.resolve()} (task.data_path)")
    return path


TEXT_TYPES = (".csv", ".tsv", ".jsonl", ".json")  # read as UTF-8 text; .json: JSON Lines or one array
_CHUNK = 1 << 20


def check_text_file(path: Path, cfg, json_lines: bool = False) -> None:
    """Refuse a text data file that is empty (or blank), holds bytes that are not UTF-8 (naming
    the byte offset of the first), or, with ``json_lines``, has a line that is not a JSON object
    (naming the line). Reads the file in chunks, so a huge file costs no memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, blank = 0, True
    compressed = file_kind(path)[1] is not None
    with open_bytes(path, cfg.name) as fh:
        while True:
            try:
                chunk = fh.read(_CHUNK)
            except READ_ERRORS as exc:
                raise unreadable(cfg.name, path, exc) from None
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = offset - pending + exc.start
                raise TaskDataError(
                    f"task {cfg.name}: {path} is not UTF-8: byte 0x{exc.object[exc.start]:02x} at "
                    f"byte offset {at}{' of its decompressed text' if compressed else ''} cannot be "
                    f"decoded{encoding_hint(exc.object, exc.start, at, path)}") from None
            blank = blank and not text.strip()
            offset += len(chunk)
            if not chunk:
                break
    if blank:
        raise TaskDataError(f"task {cfg.name}: data file is empty: {path}")
    if json_lines:
        for n, line in numbered_lines(path):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"task {cfg.name}: line {n} of {path} is not valid JSON: "
                                    f"{exc.msg} at column {exc.colno}") from None
            if not isinstance(row, dict):
                raise TaskDataError(f"task {cfg.name}: line {n} of {path} is not a JSON object "
                                    f"({{\"column\": value, ...}}), it is a {type(row).__name__}")


def read_table(path: Path, cfg) -> pd.DataFrame:
    """The file as a frame. A ``.csv`` whose first row holds no comma but a ``;``, tab or ``|``
    is read with that delimiter (``attrs["read_as"]`` says so); ``task.delimiter`` sets it."""
    suffix, compression = file_kind(path)
    reader = READERS.get(suffix)
    if compression and suffix not in TEXT_TYPES and suffix not in READERS:  # data.zip: of what?
        raise TaskDataError(f"task {cfg.name}: cannot tell what {path.name} holds: name a compressed file "
                            f"after its contents, e.g. {path.stem}.csv{compression} or {path.stem}.jsonl{compression}")
    if reader is None or (compression and suffix not in TEXT_TYPES):
        raise TaskDataError(f"task {cfg.name}: cannot read {path.name}; allowed file types: {allowed_types()}")
    sep, quotes = getattr(cfg, "delimiter", None), str(getattr(cfg, "quoting", "csv")) == "csv"
    for key, value in (("delimiter", sep), ("quoting", None if quotes else "none")):
        if value is not None and suffix not in DELIMITED:
            raise TaskDataError(f"task {cfg.name}: task.{key}={value!r} applies to .csv and .tsv files, "
                                f"not {path.name}; leave it unset")
    array = suffix == ".json" and starts_an_array(path, cfg.name)
    if suffix in TEXT_TYPES:
        check_text_file(path, cfg, json_lines=suffix == ".jsonl" or (suffix == ".json" and not array))
    elif path.stat().st_size == 0:
        raise TaskDataError(f"task {cfg.name}: data file is empty: {path}")
    records = json_array(path, cfg.name) if array else None
    read_as = sniff_delimiter(path, cfg.name) if sep is None and suffix == ".csv" else None
    used = sep or read_as or DELIMITED.get(suffix)  # the delimiter of a CSV/TSV, None for the others
    if quotes and used:
        check_quotes(path, cfg.name, used)
    try:
        if records is not None:
            frame = pd.DataFrame.from_records(records)
        else:  # a compressed file: the stream the harness checked, so both read the same member
            with (open_bytes(path, cfg.name) if compression else contextlib.nullcontext(path)) as source:
                frame = reader(source, sep=used, header=bool(getattr(cfg, "header", True)), quotes=quotes)
    except Exception as exc:  # noqa: BLE001 - the parser's message, on one line
        message = str(exc).splitlines()[0]
        if "fields in line" in message and used:  # a text holding the delimiter, unquoted
            message += (f"; a value holding the delimiter ({DELIMITER_NAMES.get(used, repr(used))}) must be "
                        f"in double quotes, as spreadsheet programs and pandas' to_csv write it")
        raise TaskDataError(f"task {cfg.name}: cannot parse {path}: {message}") from None
    if len(frame) == 0:
        raise TaskDataError(f"task {cfg.name}: {path} has no rows (columns: {list(frame.columns)[:20]})")
    if read_as:
        frame.attrs["read_as"] = (f"{path.name} read as {DELIMITER_NAMES[read_as]}-separated (its first "
                                  f"row holds no comma; task.delimiter sets the delimiter)")
    return frame


def select_columns(df: pd.DataFrame, cfg, path) -> pd.DataFrame:
    if getattr(cfg, "messages_column", None):  # chat conversations (harness.tasks.conversations)
        return read_conversations(df, cfg, path)
    text_cols = list(cfg.text_columns or [cfg.text_column])
    wanted = {"text": text_cols, "label": [cfg.label_column]}
    kind = task_type(cfg.task_type)
    for column in kind.columns:  # e.g. choices, from task.choices_column
        wanted[column] = [getattr(cfg, f"{column}_column")]
    for column in kind.optional_columns:  # read when the file has it
        if getattr(cfg, f"{column}_column") in df.columns:
            wanted[column] = [getattr(cfg, f"{column}_column")]
    if cfg.split_column:
        wanted["split"] = [cfg.split_column]
    wanted = {key: [by_position(df, c) for c in cols] for key, cols in wanted.items()}
    missing = [c for cols in wanted.values() for c in cols if c not in df.columns]
    if missing:
        raise TaskDataError(f"task {cfg.name}: column(s) {missing} not in {path}; "
                            f"its columns: {[_cut(c) for c in list(df.columns)[:20]]}{header_hint(df, path, cfg)}"
                            f"{conversation_hint(df)}")
    text_cols = wanted["text"]
    for column in text_cols:
        refuse_non_text(df, column, cfg, path)
    out = pd.DataFrame({"text": df[text_cols].astype(str).agg("\n\n".join, axis=1)
                        if len(text_cols) > 1 else df[text_cols[0]],
                        "label": df[wanted["label"][0]]})
    for key in [k for k in wanted if k not in ("text", "label")]:
        out[key] = df[wanted[key][0]]
    out.attrs["source"] = f"file:{Path(path).resolve()}"
    if df.attrs.get("read_as"):
        out.attrs["read_as"] = df.attrs["read_as"]
    return out


def by_position(df: pd.DataFrame, column) -> str:
    """``column`` as the frame names it: itself, or, when no column has that name and it is a
    whole number, the column at that position (from 0)."""
    name = str(column)
    if name in df.columns or not name.isdigit() or int(name) >= len(df.columns):
        return name
    return str(df.columns[int(name)])


def header_hint(df: pd.DataFrame, path, cfg) -> str:
    """Why configured columns may be missing: a CSV/TSV whose first row is data, not names."""
    if file_kind(path)[0] not in DELIMITED or not getattr(cfg, "header", True):
        return ""
    names = [str(c) for c in df.columns]
    # A name is data-like when it is a number, a sentence, or pandas had to rename a duplicate.
    datalike = [n for n in names if _number(n) or len(n) > 40 or len(n.split()) > 5
                or (n.rpartition(".")[0] in names and n.rpartition(".")[2].isdigit())]
    if not datalike:
        return ""
    text = max(range(len(names)), key=lambda i: len(names[i]))  # the longest cell: the text
    label = min((i for i in range(len(names)) if i != text), key=lambda i: len(names[i]), default=text)
    return (f". Its first row looks like data, not column names ({_cut(datalike[0])!r}): if the file "
            f"has no header, set task.header=false and name the columns by position, here likely "
            f"task.text_column={text} task.label_column={label}")


def _cut(name, width: int = 40) -> str:
    name = str(name)
    return name if len(name) <= width else name[:width - 3] + "..."


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def refuse_non_text(df: pd.DataFrame, column: str, cfg, path) -> None:
    """A text column holds text: a list or JSON object would be trained on as its Python form,
    and a column of numbers alone is a label or an id named as the text by mistake."""
    values = df[column]
    if len(values) and (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise TaskDataError(f"task {cfg.name}: column {column!r} of {path} holds only numbers "
                            f"(row 1: {values.iloc[0]}), not text: name a text column (task.text_column)")
    for position, value in enumerate(values):
        if isinstance(value, (list, tuple, dict, set)) or hasattr(value, "tolist") and not hasattr(value, "item"):
            kind = "a JSON object" if isinstance(value, dict) else "a list"
            raise TaskDataError(f"task {cfg.name}: column {column!r} of {path} holds {kind} in row "
                                f"{position + 1}, not text: name a text column (task.text_column), "
                                f"or join the parts into one string")


@TASK_LOADERS.register("csv", data_path="required", example="path/to/data.csv", reads="file")
@TASK_LOADERS.register("jsonl", data_path="required", example="path/to/data.jsonl", reads="file")
@TASK_LOADERS.register("parquet", data_path="required", example="path/to/data.parquet", reads="file")
def load_file(cfg) -> pd.DataFrame:
    """A table file of the user's; its type comes from the extension (.csv .tsv .jsonl .parquet)."""
    path = data_file(cfg)
    return select_columns(read_table(path, cfg), cfg, path)
