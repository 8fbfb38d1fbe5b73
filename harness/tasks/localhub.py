"""Local copies of hub dataset repositories, as ``git clone`` gives them, read with ``datasets``.

What the loaders of such folders (:mod:`harness.tasks.hub`, :mod:`harness.tasks.lexglue`) share,
so that the preflight and the run look at a folder the same way:

- :func:`check_repo`: files that are git-lfs pointers (a clone without ``git lfs pull``: the
  data is a 130-byte text naming it) and a README whose YAML front matter (the dataset card's
  ``configs:``) does not parse are refused in one line naming the file, before ``datasets``
  turns either into a traceback deep inside its builder.
- :func:`cache_dir`: where ``datasets`` keeps what it made of a folder, one place per folder
  path and content. Its own cache keys local files by path and modification time, so a file
  edited in place could be served from the old rows, and two folders holding the same hub id
  could read each other's; keyed by the content digest the run's data fingerprint is made of
  (:func:`harness.digest.content_digest`), a run reads the rows it is identified by.
- :func:`reason`: the message of the error under ``datasets``' "An error occurred while
  generating the dataset" (the parser's, which names the problem), on one line.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from harness.errors import first_line
from harness.tasks.data import TaskDataError

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def data_files(folder: Path) -> list[Path]:
    """The files of a repository copy, its ``.git`` folder left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.relative_to(folder).parts)


def check_repo(cfg, folder: Path, what: str) -> None:
    """Refuse a folder without files, a git-lfs pointer in place of a data file, or a README
    whose YAML front matter is broken; ``what``: the folder as the message names it."""
    files = data_files(folder)
    if not files:
        raise TaskDataError(f"task {cfg.name}: {folder} has no files ({what})")
    for path in files:
        with open(path, "rb") as fh:
            if fh.read(len(LFS_POINTER)) == LFS_POINTER:
                raise TaskDataError(f"task {cfg.name}: {path} is a git-lfs pointer, not the data "
                                    f"({what}); run `git lfs pull` in {folder}")
    card = folder / "README.md"
    if card.is_file():
        check_card(cfg, card)


def check_card(cfg, card: Path) -> None:
    """The dataset card's YAML front matter (between ``---`` lines) must parse to a mapping."""
    import yaml

    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return
    end = text.find("\n---", 3)
    if end < 0:
        raise TaskDataError(f"task {cfg.name}: the YAML front matter of {card} has no closing '---' line")
    try:
        meta = yaml.safe_load(text[3:end])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise TaskDataError(f"task {cfg.name}: the YAML front matter of {card} is broken: "
                            f"{problem}{at} (of the front matter)") from None
    if meta is not None and not isinstance(meta, dict):
        raise TaskDataError(f"task {cfg.name}: the YAML front matter of {card} is a "
                            f"{type(meta).__name__}, not a mapping (license:, configs: ...)")


def cache_dir(folder: Path) -> str:
    """``datasets``' cache for this folder: a place of its own per folder path and content."""
    from harness.digest import content_digest

    from harness.paths import cache_dir as root_dir

    root = root_dir()
    where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return str(root / "datasets" / f"{where}-{content_digest(folder)}")


def reason(exc: BaseException, width: int = 300) -> str:
    """The cause of a ``datasets`` error (its parser's message, not the wrapper's "An error
    occurred while generating the dataset"), its lines joined into one, cut to ``width``."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
        if isinstance(exc, (ValueError, OSError)) and str(exc).strip():
            break
    text = " ".join(str(exc).split()) or first_line(exc)
    return text if len(text) <= width else text[:width - 3] + "..."


def load_as_the_run_does(cfg, where) -> None:
    """Load a local copy's task as the run will (its type's checks included), so a wrong field,
    a broken file or a missing column stops the preflight in one line naming ``where``."""
    from harness.tasks.load import load_task

    try:
        load_task(cfg)
    except TaskDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader's or converter's error, on one line
        raise TaskDataError(f"task {cfg.name}: cannot load {where}: {reason(exc)}") from None
