"""What ``python -m harness.results import`` and ``copy`` check before a run enters a store.

A store is read by reports that trust it, so a run from outside (a kept ``unrecorded.json``,
another store's row) is refused whole, with one line saying why, when it is malformed (not a
JSON object, unknown or missing fields, a value of the wrong type, an integer past 64 bits, text
with a NUL, broken curves), when a metric or a curve value is not finite, when its per-example
predictions do not have its split's size (``n_test`` ...), or, for a kept file, when its
``config_hash`` is not the hash of its config (a hand-edited or corrupted file would otherwise
make the store skip, or report under the wrong configuration, the runs that match it).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.errors import first_line
from harness.fields import FIELDS
from harness.results.store import check_row

INT64 = (-2**63, 2**63 - 1)
FILE_KEYS = {"row", "curves"}, {"predictions"}  # required, optional
CURVE_KEYS = {"epoch", "split", "metric", "value"}, {"variant"}


class Refused(ValueError):
    """A run that may not enter a store; the message is one line saying why."""


def _text(where: str, value) -> None:
    if not isinstance(value, str):
        raise Refused(f"{where} must be text, got {type(value).__name__}")
    if "\x00" in value:
        raise Refused(f"{where} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(f"{where} is not valid UTF-8 text") from None


def _integer(where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"{where} must be an integer, got {type(value).__name__}")
    if not INT64[0] <= value <= INT64[1]:
        raise Refused(f"{where} is {value}, outside the 64-bit integers a store holds")


def _finite(where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(f"{where} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise Refused(f"{where} is {value}, not a finite number")


def check_fields(row: dict) -> None:
    """The row fits the runs table: known fields, required ones set, types, ranges, finite reals."""
    try:
        check_row(row)
    except ValueError as exc:
        raise Refused(first_line(exc)) from None
    if not str(row["run_id"]).strip():
        raise Refused("field 'run_id' is empty")
    for name, value in row.items():
        kind = FIELDS[name].type
        if value is None:
            continue
        if kind == "text":
            _text(f"field {name!r}", value)
        elif kind == "integer":
            _integer(f"field {name!r}", value)
        elif kind == "bool" and value not in (0, 1):
            raise Refused(f"field {name!r} must be true or false, got {value!r}")
        elif kind == "real":
            _finite(f"metric {name!r}", value)


def check_curves(curves) -> None:
    """A list of per-epoch points, each with an integer epoch, text split, metric and variant,
    and a finite value (or none)."""
    if not isinstance(curves, list):
        raise Refused(f"curves must be a list, got {type(curves).__name__}")
    required, optional = CURVE_KEYS
    for i, point in enumerate(curves):
        where = f"curves[{i}]"
        if not isinstance(point, dict):
            raise Refused(f"{where} must be an object, got {type(point).__name__}")
        if set(point) - required - optional or required - set(point):
            raise Refused(f"{where} has keys {sorted(point)}; expected {sorted(required)} "
                          f"and optionally {sorted(optional)}")
        if point["epoch"] is not None:
            _integer(f"{where}.epoch", point["epoch"])
        for key in ("split", "metric", "variant"):
            if key in point and not (key == "variant" and point[key] is None):
                _text(f"{where}.{key}", point[key])
        if point["value"] is not None:
            _finite(f"{where}.value ({point['metric']!r})", point["value"])


def as_arrays(predictions) -> dict:
    """``{split: {what: array}}`` from what a kept file or a store holds; Refused unless every
    entry is a flat or nested list of numbers or text."""
    import numpy as np

    if predictions is None:
        return {}
    if not isinstance(predictions, dict) or not all(isinstance(a, dict) for a in predictions.values()):
        raise Refused("predictions must map each split to an object of arrays")
    out: dict = {}
    for split, arrays in predictions.items():
        for what, values in arrays.items():
            _text("a predictions split", split)
            _text(f"predictions[{split!r}] key", what)
            try:
                array = np.asarray(values)
            except (ValueError, TypeError) as exc:
                raise Refused(f"predictions[{split!r}][{what!r}] is not an array ({first_line(exc)})") from None
            if array.dtype.kind not in "biufU" or array.ndim == 0:
                raise Refused(f"predictions[{split!r}][{what!r}] is not an array of numbers or text "
                              "with one entry per example")
            out.setdefault(split, {})[what] = array
    return out


def check_predictions(row: dict, predictions: dict) -> None:
    """Every array of a split has one entry per example of that split (``n_<split>`` when the row
    records it, else the same length as the split's other arrays)."""
    for split, arrays in predictions.items():
        size = row.get(f"n_{split}") if f"n_{split}" in FIELDS else None
        for what, array in arrays.items():
            expected = size if size is not None else len(next(iter(arrays.values())))
            if len(array) != expected:
                raise Refused(f"predictions[{split!r}][{what!r}] has {len(array)} entries but the "
                              f"{split} split has {expected} example(s)")


def _identities(config: dict, row: dict) -> list[dict]:
    """What the run recorded it was computed from (:func:`harness.results.fingerprint.run_identity`, the
    keys its config gives), as its hash saw it on the machine it ran on; nothing is recomputed
    here (the data and model may be elsewhere, the device another). The resolved autocast is not
    recorded: both values a CPU may resolve ``auto`` to are tried."""
    recorded = {"harness_version": True, "data_fingerprint": isinstance(config.get("task"), dict),
                "model_fingerprint": isinstance(config.get("model"), dict)}
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    recorded["device_kind"] = "device" in trainer
    given = {name: row.get(name) for name, kept in recorded.items() if kept}
    if "device" not in trainer or "autocast" not in trainer:
        return [given]
    setting = str(trainer["autocast"])
    kinds = [setting] if setting != "auto" else ["bf16", "off"] if given["device_kind"] == "cpu" else ["auto"]
    return [{**given, "autocast": kind} for kind in kinds]


def check_hash(row: dict) -> None:
    """``config_hash`` is the hash of ``config_json`` (:func:`harness.results.identity.config_hash`)."""
    from harness.results.identity import config_hash

    try:
        config = json.loads(row["config_json"])
    except (ValueError, RecursionError) as exc:
        raise Refused(f"config_json is not JSON ({first_line(exc)})") from None
    if not isinstance(config, dict):
        raise Refused(f"config_json is not a JSON object (a {type(config).__name__})")
    try:
        hashes = [config_hash(config, identity) for identity in _identities(config, row)]
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise Refused(f"config_json cannot be hashed ({first_line(exc)})") from None
    if row["config_hash"] not in hashes:
        raise Refused(f"config_hash {row['config_hash']!r} does not match its config "
                      f"(which hashes to {hashes[0]!r})")


def check_run(row, curves, predictions, verify_hash: bool = True) -> tuple[dict, list, dict]:
    """Every check above; returns (row, curves, predictions as arrays), or raises Refused."""
    if not isinstance(row, dict):
        raise Refused(f"row must be an object, got {type(row).__name__}")
    check_fields(row)
    check_curves(curves)
    arrays = as_arrays(predictions)
    check_predictions(row, arrays)
    if verify_hash:
        check_hash(row)
    return row, curves, arrays


def read_unrecorded(path: Path) -> tuple[dict, list, dict]:
    """A kept run (``unrecorded.json``: row, curves, predictions), checked; Refused if not usable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Refused(f"cannot be read ({first_line(exc)})") from None
    if not data.strip():
        raise Refused("is empty")
    try:
        kept = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Refused(f"is not JSON ({first_line(exc)})") from None
    if not isinstance(kept, dict):
        raise Refused(f"is not a JSON object (a {type(kept).__name__})")
    required, optional = FILE_KEYS
    if set(kept) - required - optional or required - set(kept):
        raise Refused(f"has keys {sorted(kept)}; expected {sorted(required)} and optionally "
                      f"{sorted(optional)}")
    return check_run(kept["row"], kept["curves"], kept.get("predictions"))
