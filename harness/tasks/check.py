"""What the preflight asks of a task's local data before anything trains.

Every task of a run (each sub-task of a multi-task run) whose loader reads a local file
(registered with ``reads="file"``, :mod:`harness.tasks.data`) is loaded with its loader, as a run
loads it, and checked: ``task.data_path`` is a file, not a folder; the file is not empty and is
UTF-8 (else the byte offset of the first bad byte is named); each line of a JSON Lines file is a
JSON object (else the line is named); the configured columns are there (else the missing ones and
those present are named); labels are integers or strings, with at least two classes in the data;
no split is empty. A loader that reads a folder (``reads="folder"``) gets its registered
``check``. Rows left out for a missing label or text, and a configured split size
(``task.train_size`` ...) larger than its split (which takes the whole split, as the shipped
SCOTUS and overruling configs do with the shared files), are notes, not errors.

Standard library and pandas only: no torch, transformers or peft. Each data file is read once
for all the jobs of a command that use it (:class:`DataCheck`).
"""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

from harness.errors import first_line
from harness.tasks.data import TASK_LOADERS, TaskDataError
from harness.tasks.files import TEXT_TYPES, allowed_types, check_text_file, file_kind
from harness.tasks.load import load_rows, load_task

# Settings that only pick rows from the loaded data: jobs that differ in these share one read.
_PICK_ONLY = {"train_size", "val_size", "test_size", "split_seed", "val_fraction", "test_fraction",
              "labels", "max_length", "truncation", "cache_tokens"}


def tasks_of(cfg) -> list:
    """The plain task configs of a run: the sub-tasks of a multi-task config, else itself."""
    subtasks = getattr(cfg, "subtasks", None) or {}
    return [t for sub in subtasks.values() for t in tasks_of(sub)] if subtasks else [cfg]


class DataCheck:
    """Checks the data of each distinct task config once; reads each data file once."""

    def __init__(self) -> None:
        self._rows: dict[str, object] = {}
        self._notes: dict[str, list[str]] = {}
        self.notes: list[str] = []  # rows left out, short splits: shown once all jobs passed
        self._data: dict[str, object] = {}  # the splits of each file task, as a run draws them
        self._tokenizers: dict[str, object] = {}
        self._cuts: set[str] = set()
        self.cut_keys: list[str] = []  # the cut notes printed, as note_key gives them (for the runs)

    def __call__(self, task_cfg) -> None:
        """Check the local data of a run's task; raise :class:`TaskDataError` (one line)."""
        for cfg in tasks_of(task_cfg):
            for note in self._check(cfg):
                if note not in self.notes:
                    self.notes.append(note)

    def _check(self, cfg) -> list[str]:
        info = TASK_LOADERS.info(cfg.loader) if cfg.loader in TASK_LOADERS else {}
        reads = info.get("reads")
        if reads not in ("file", "folder") or not cfg.data_path:
            return []
        key = repr(cfg)
        if key in self._notes:
            return self._notes[key]
        path = Path(cfg.data_path).expanduser()
        if not path.exists():
            raise TaskDataError(f"task.data_path: no such {reads}: {path} (task {cfg.name})")
        if reads == "folder":
            if not path.is_dir():
                raise TaskDataError(f"task.data_path: {path} is a file, but task {cfg.name} reads a folder")
            if info.get("check"):
                info["check"](cfg)
            self._notes[key] = []
            return []
        if path.is_dir():
            raise TaskDataError(f"task.data_path: {path} is a folder, but task {cfg.name} reads a "
                                f"data file ({allowed_types()})")
        if not os.access(path, os.R_OK):
            raise TaskDataError(f"task.data_path: cannot read {path} (permission denied)")
        stat = path.stat()
        rows_key = repr(({f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _PICK_ONLY},
                         str(path.resolve()), stat.st_size, stat.st_mtime_ns))
        try:
            if rows_key not in self._rows:
                if file_kind(path)[0] in TEXT_TYPES:
                    check_text_file(path, cfg)
                self._rows[rows_key] = load_rows(cfg)
            rows = self._rows[rows_key]
            short: list[str] = []
            data = load_task(cfg, rows=rows, short=short)
        except TaskDataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a loader's or parser's own error, on one line
            raise TaskDataError(f"task {cfg.name}: cannot load {path}: {first_line(exc)}") from None
        self._data[key] = data
        notes = [f"task {cfg.name}: {line}" for line in short]
        if rows.attrs.get("read_as"):
            notes.insert(0, f"task {cfg.name}: {rows.attrs['read_as']}")
        if data.dropped_rows:
            reasons = ", ".join(f"{n} {reason}" for reason, n in data.dropped.items())
            total = len(rows) + data.dropped_rows - data.dropped.get("repeated text", 0)  # rows holds those
            notes.append(f"task {cfg.name}: {data.dropped_rows} of {total} "
                         f"rows of {path} left out ({reasons})")
        for line in (repeated_line(data, rows), *odd_rows(data, rows)):
            if line:
                notes.append(f"task {cfg.name}: {line}")
        self._notes[key] = notes
        return notes

    def cut_note(self, run_cfg) -> None:
        """Tokenize a file task's splits with the run's tokenizer, as the run will (into the same
        token cache, so the run does not do it again), and note how many examples
        ``task.max_length`` cuts and by how much. Runs of one file and tokenizer are counted once;
        a tokenizer that cannot load here (a hub model offline) is left for the run to report, and
        an example the run could not encode (:class:`TaskDataError`) is refused here."""
        from harness.tasks.encoding import cut_line, cut_summary, encode_cached
        from harness.tasks.types import task_truncation

        task = run_cfg.task
        data = self._data.get(repr(task))
        key = repr((repr(task), repr(run_cfg.model)))
        if data is None or key in self._cuts:
            return
        self._cuts.add(key)
        try:
            tokenizer = self._tokenizer(run_cfg.model)
        except Exception:  # noqa: BLE001 - see the docstring
            return
        from harness.paths import cache_dir

        strategy = task_truncation(task)
        folder = cache_dir() / "tokens" if task.cache_tokens else None
        try:
            encoded = {name: encode_cached(getattr(data, name), tokenizer, task.max_length, strategy,
                                           folder, data.type) for name in ("train", "validation", "test")}
        except TaskDataError as exc:  # what the run would fail on (an answer past task.max_length)
            raise TaskDataError(f"task {task.name} ({run_cfg.model.name}): {exc}") from None
        except Exception:  # noqa: BLE001 - the run reports what tokenizing here could not do
            return
        line = cut_line(cut_summary(encoded, task.max_length, strategy, getattr(data.type, "conversation", False)))
        if line:
            self.notes.append(f"task {task.name} ({run_cfg.model.name}): {line}")
            self.cut_keys.append(note_key(task.name, run_cfg.model.name, line))

    def _tokenizer(self, model_cfg):
        from harness.models.load import load_tokenizer

        key = repr(model_cfg)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(model_cfg)
        return self._tokenizers[key]


# The cut notes the command's preflight printed (short keys, note_key), for its runs on this host
# not to print them again; keys keep the variable short whatever a sweep's size.
NOTED_ENV = "PEFT_HARNESS_NOTED"


def note_key(task_name: str, model_name: str, line: str) -> str:
    """A short key of one cut note: the task, the model whose tokenizer counted it, its line."""
    import hashlib

    return hashlib.sha256(json.dumps([task_name, model_name, line]).encode()).hexdigest()[:12]


def remember_notes(keys: list[str]) -> None:
    """Tell the command's runs (started after this, on this host) which cut notes it printed."""
    os.environ[NOTED_ENV] = ",".join(keys)


def already_noted(task_name: str, model_name: str, line: str) -> bool:
    """Whether the command that started this run printed the cut note ``line`` of task
    ``task_name`` and model ``model_name`` already (a run on another host, a SLURM node's, prints
    its own notes into its own log)."""
    import socket

    from harness.paths import SWEEP_HOST_ENV

    if os.environ.get(SWEEP_HOST_ENV) != socket.gethostname():
        return False
    return note_key(task_name, model_name, line) in (os.environ.get(NOTED_ENV) or "").split(",")


def repeated_line(data, rows) -> str | None:
    """The note on validation and test examples that repeat a training text, or on the rows
    ``task.duplicates=drop`` left out."""
    if data.dropped.get("repeated text"):
        from harness.tasks.load import conflicting_labels

        conflicting = conflicting_labels(rows)  # counted in the rows-left-out note; conflicts said here
        return (f"task.duplicates=drop: {conflicting} texts' copies disagreed on the label (the first row's "
                f"label kept)") if conflicting else None
    test, val = data.in_train.get("test", 0), data.in_train.get("validation", 0)
    if not test and not val:
        return None
    return (f"{test} of {len(data.test)} test and {val} of {len(data.validation)} validation examples repeat "
            f"a training text (the data holds some texts more than once), so their scores partly measure "
            f"recall; task.duplicates=drop keeps one row per text")


def odd_rows(data, rows) -> list[str]:
    """Notes on what is likely a slip in the file but is trained as written: labels that differ
    only in case or surrounding spaces ('Yes', 'yes' and 'yes ', three classes), and texts of
    spaces only."""
    out = []
    groups: dict[str, list[str]] = {}
    for name in data.label_names if getattr(data.type, "named_classes", False) else []:
        groups.setdefault(str(name).strip().casefold(), []).append(str(name))
    same = [names for names in groups.values() if len(names) > 1]
    if same:
        shown = "; ".join(" and ".join(repr(n) for n in names) for names in same[:3])
        how = ("case" if all(n == n.strip() for names in same for n in names) else
               "spaces around them" if all(len({n.strip() for n in names}) == 1 for names in same)
               else "case or spaces around them")
        out.append(f"labels {shown} differ only in {how} and are trained as different classes; if they "
                   f"are one class, write them alike in the file")
    blank = int(rows["text"].astype(str).str.strip().eq("").sum()) if "text" in rows.columns else 0
    if blank:
        out.append(f"{blank} rows have a text of spaces only, trained on as an empty input")
    return out
