"""What one row of a report is: a *group*, one whole configuration apart from its seed.

Runs are averaged together only when their resolved configs (``config_json``) are equal once
``seed`` and the keys that do not change a run's numbers (:data:`harness.results.identity.UNHASHED`) are
left out, and they were computed from the same data, model, device kind and harness version (the
:data:`IDENTITY` columns). Runs of one method with another learning rate, data size or epoch
count are other groups, never averaged in as if they were seeds; where several groups share a
method (and quant and r) in one table, each label names the settings that tell them apart
("lora (lr=0.001)"). ``task.split_seed`` follows the seed by default and is then no setting
(:func:`group_keys`).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.results.identity import UNHASHED

# The axes a table is laid out by: one table per (task, model); a row per group, labelled by
# method (plus quant and r where the selection holds several, plus the settings that differ).
GROUP = ["task", "model", "method", "quant", "r"]
# What a run was computed from besides its config (harness.results.fingerprint): part of the group key.
IDENTITY = ["data_fingerprint", "model_fingerprint", "device_kind", "harness_version"]
# Config keys that follow the seed by default (``split_seed: ${seed}``: each seed draws its own
# split) but may be set apart from it (a split fixed for every seed). A run's value is "seed"
# when it follows the seed, else the value itself; see :func:`group_keys`.
SEED_FOLLOWERS = ("task.split_seed",)
FOLLOWS_SEED = "seed"


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_MISSING = _Unset()  # a path one config has and another lacks


def blank(value):
    """None for an empty cell (NULL, NaN, ""), else the value."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value == "":
        return None
    return value


def config_key(config_json, row: dict | pd.Series | None = None) -> dict:
    """A run's configuration apart from its seed: the resolved config without ``seed`` and the
    :data:`~harness.results.identity.UNHASHED` keys, the run's :data:`GROUP` axes under ``_axes`` and its
    :data:`IDENTITY` columns under ``_run`` (empty for rows stored before them)."""
    try:
        cfg = json.loads(config_json) if isinstance(config_json, str) else dict(config_json or {})
    except (TypeError, ValueError):
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    cfg.pop("seed", None)
    for key in UNHASHED:
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    row = row if row is not None else {}
    axes = {c: blank(row.get(c)) for c in GROUP}
    if axes.get("r") is not None:
        axes["r"] = int(axes["r"])
    cfg["_axes"] = axes
    cfg["_run"] = {c: blank(row.get(c)) for c in IDENTITY}
    return cfg


def group_keys(configs, runs: pd.DataFrame) -> list[str]:
    """Each run's group key (:func:`config_key`, as JSON), with every :data:`SEED_FOLLOWERS` key
    made "seed" where it follows the run's seed. Among runs alike in everything else, a value
    that differs from some run's seed is a fixed setting (``split_seed: 0`` for every seed), and
    the run whose seed happens to equal it (seed 0) joins those runs rather than standing apart."""
    read = runs[[c for c in GROUP + IDENTITY if c in runs.columns]].to_dict("records")
    keys = [config_key(c, r) for c, r in zip(configs, read)]
    seeds = list(runs["seed"]) if "seed" in runs.columns else [None] * len(keys)
    for path in SEED_FOLLOWERS:
        *parents, leaf = path.split(".")
        nodes = []
        for key in keys:
            node = key
            for p in parents:
                node = node.get(p) if isinstance(node, dict) else None
            nodes.append(node if isinstance(node, dict) and leaf in node else None)
        rest = []  # each key with this setting blanked: what the runs must share to be alike
        for k, n in zip(keys, nodes):
            if n is not None:
                value, n[leaf] = n[leaf], None
            rest.append(key_text(k))
            if n is not None:
                n[leaf] = value
        fixed: dict[str, set] = {}
        for r, n, seed in zip(rest, nodes, seeds):
            if n is not None and n[leaf] != seed:
                fixed.setdefault(r, set()).add(json.dumps(n[leaf]))
        for r, n, seed in zip(rest, nodes, seeds):
            if n is not None and n[leaf] == seed and json.dumps(n[leaf]) not in fixed.get(r, set()):
                n[leaf] = FOLLOWS_SEED
    return [key_text(k) for k in keys]


def key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"method.lr": 0.001, ...}: a nested config as dotted paths to its leaves (lists as JSON)."""
    out: dict[str, object] = {}
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, path + "."))
        else:
            out[path] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    return out


def setting_name(path: str) -> str:
    """How a setting is named in a label or a sentence: the run columns by name, the axes by
    axis, config keys by their dotted path."""
    for prefix in ("_run.", "_axes."):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def setting_value(value) -> str:
    if value is _MISSING:
        return "unset"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if len(text) <= 16 else text[:12] + "…"


def differing_settings(keys: list[dict], leave_out: tuple[str, ...] = ()) -> list[str]:
    """The dotted paths whose values are not the same in every key (``leave_out``: path prefixes
    to ignore); the method's own settings first, the run columns last."""
    return differing_paths([dumped(flatten(k)) for k in keys], leave_out)


UNSET_TEXT = json.dumps(_MISSING, default=str)  # how a path a key lacks compares


def dumped(flat: dict) -> dict[str, str]:
    """A flattened key's values as JSON text: what :func:`differing_paths` compares (so 1, 1.0
    and true stay three values)."""
    return {p: json.dumps(v, default=str) for p, v in flat.items()}


def differing_paths(dumps: list[dict[str, str]], leave_out: tuple[str, ...] = ()) -> list[str]:
    """:func:`differing_settings` over keys already flattened and :func:`dumped`. With two keys
    only the paths in their symmetric difference are looked at: a report compares every pair of
    configurations, and their keys share most of their ~150 paths."""
    if len(dumps) == 2:
        candidates = {p for p, _ in dumps[0].items() ^ dumps[1].items()}
    else:
        candidates = {p for d in dumps for p in d}
    out = [p for p in candidates if not any(p == l or p.startswith(l + ".") for l in leave_out)
           and len({d.get(p, UNSET_TEXT) for d in dumps}) > 1]
    return sorted(out, key=lambda p: (not p.startswith("method."), p.startswith("_run."), p))


def describe_settings(paths: list[str], key: dict) -> str:
    """'lr=0.001, epochs=3': the values of ``paths`` in one key, each under its shortest name
    that is unambiguous among ``paths``."""
    flat = flatten(key)
    leaves = [setting_name(p).rsplit(".", 1)[-1] for p in paths]
    names = [leaf if leaves.count(leaf) == 1 else setting_name(p) for p, leaf in zip(paths, leaves)]
    return ", ".join(f"{n}={setting_value(flat.get(p, _MISSING))}" for n, p in zip(names, paths))


def group_labels(frame: pd.DataFrame) -> pd.Series:
    """Method name, plus the quant and r where the selection holds several for that method, plus,
    where one table holds several groups of that method, quant and r (``group`` column), the
    settings that tell them apart: "lora (lr=0.001)"."""
    # how many quants and ranks each method has, counted once per method (not once per row)
    by_method = frame.groupby("method", dropna=False, sort=False)
    quants = by_method["quant"].transform("nunique") if len(frame) else frame["quant"]
    ranks = by_method["r"].transform("nunique") if len(frame) else frame["r"]
    labels = []
    for method, quant, r, nq, nr in zip(frame["method"], frame["quant"], frame["r"], quants, ranks):
        label = str(method)
        if nq > 1:
            label += f" {quant}"
        if nr > 1 and not pd.isna(r):
            label += f" r={r}"
        labels.append(label)
    labels = pd.Series(labels, index=frame.index, dtype=object)
    if "group" not in frame.columns:
        return labels
    axes = frame[GROUP].astype(object).where(frame[GROUP].notna(), None)
    for _, idx in axes.groupby(GROUP, dropna=False, sort=False).groups.items():
        groups = list(dict.fromkeys(frame.loc[idx, "group"]))
        if len(groups) < 2:
            continue
        keys = [json.loads(g) for g in groups]
        paths = differing_settings(keys)
        if len(paths) > 1 and "protocol.search_id" in paths:  # follows from the other settings
            paths.remove("protocol.search_id")
        suffix = {g: describe_settings(paths, k) for g, k in zip(groups, keys)}
        if len(set(suffix.values())) < len(groups):  # values too alike once shortened
            suffix = {g: f"{s} #{i + 1}" for i, (g, s) in enumerate(suffix.items())}
        for i in idx:
            labels[i] = f"{labels[i]} ({suffix[frame.at[i, 'group']]})"
    return labels
