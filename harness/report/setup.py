"""What a report's reader needs to reproduce it: data sizes, hardware, versions, commits."""
from __future__ import annotations

import json

import pandas as pd

VERSIONS = ("python", "torch", "transformers", "peft", "bitsandbytes", "datasets", "peft-harness")


def _distinct(values, sep: str = ", ") -> str:
    vals = [str(v) for v in pd.unique(pd.Series(list(values)).dropna())]
    if len(vals) > 1 and sep != ", ":
        return sep.join(f"({i}) {v}" for i, v in enumerate(vals, 1))
    return sep.join(vals) if vals else "—"


def _mixed_machines(hardware: list[dict]) -> str:
    """A flag when the runs come from more than one named GPU or processor (a run recorded before
    the processor's name was, names none): their speed, memory and even 4-bit numbers differ."""
    names = {h.get("gpu") or h.get("cpu_model") for h in hardware} - {None, ""}
    return (f" (MIXED: {len(names)} kinds of GPU or processor; speed and memory differ between them, "
            f"and so can a 4-bit run's quality: compare runs of one machine)") if len(names) > 1 else ""


def _json(values) -> list[dict]:
    return [json.loads(v) for v in values if isinstance(v, str)]


def setup_rows(finished: pd.DataFrame, failed: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, value) lines describing the runs a report covers."""
    runs = pd.concat([finished, failed]) if len(failed) else finished
    prov = _json(finished["provenance_json"]) if "provenance_json" in finished else []
    hw = [p.get("hardware", {}) for p in prov]
    rows = [
        ("Runs", f"{len(finished)} finished, {len(failed)} failed"),
        ("Tasks", _distinct(runs["task"])),
        ("Models", _distinct(runs["model"])),
        ("Methods", _distinct(runs["method"])),
        ("Base precision (quant)", _distinct(runs["quant"])),
        ("Ranks r", _distinct(runs["r"].astype("Int64"))),
        ("Seeds", _distinct(sorted(runs["seed"].unique()))),
        ("Sweeps", _distinct(runs["sweep"])),
        ("Run dates", f"{runs['created_at'].min()} to {runs['created_at'].max()}"),
    ]
    for (task, model), g in finished.groupby(["task", "model"]):
        sizes = "; ".join(f"{col[2:]} {_distinct(g[col].astype('Int64'))}"
                          for col in ("n_train", "n_validation", "n_test"))
        rows.append((f"Data sizes ({task}, {model})", sizes))
    rows += [
        ("Device", _distinct(finished["device"])),
        ("Hardware", _distinct(
            f"{h.get('gpu') or h.get('cpu_model') or h.get('cpu') or '?'} ({h.get('cpu_count', '?')} CPUs"
            + (f", {h['gpu_memory_bytes'] / 2**30:.0f} GiB GPU memory" if h.get("gpu_memory_bytes") else "")
            + ")" for h in hw) + _mixed_machines(hw)),
        ("Peak memory measured as", _distinct(finished["memory_kind"])),
        ("Package versions", _distinct(
            [", ".join(f"{k} {p.get('versions', {}).get(k)}" for k in VERSIONS
                       if p.get("versions", {}).get(k)) for p in prov], sep="; ")),
        ("Harness version", _distinct(finished["harness_version"] if "harness_version" in finished
                                      else [])
         + (" (MIXED: comparisons across versions are flagged)"
            if "harness_version" in finished and finished["harness_version"].dropna().nunique() > 1 else "")),
        ("Code commit", _distinct(
            f"{str(c)[:12]}{' (uncommitted changes)' if d else ''}"
            for c, d in zip(finished["git_commit"], finished["git_dirty"]) if c)),
    ]
    return rows


def duplicates_text(d: pd.DataFrame) -> str:
    """The setup's line on finished rows left out as duplicates (the same config_hash)."""
    if d.empty:
        return "none: every finished configuration (config_hash) is stored once"
    return (f"{len(d)} duplicate finished row{'s' * (len(d) != 1)} left out (the same config_hash "
            f"as a later row, e.g. force=true or two sweeps; the latest by created_at is kept): "
            + ", ".join(f"{r.method} seed {r.seed} on {r.task} ({r.run_id})" for r in d.itertuples()))
