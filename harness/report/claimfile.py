"""Published claims, one YAML file each: what a source says, and how the harness tests it.

The harness ships the claims in ``conf/claims/`` (a folder of plain YAML files); a user adds their
own by writing files of the same shape in any folder and naming it (``python -m harness.report
--claims --claims-dir DIR``, or ``report.claims_dirs``). A file says:

- ``says``: the claim in a sentence; ``source``: where it was published (paper and table, page);
  ``url``;
- ``test``: how runs bear on it, one of :data:`TESTS`:
  ``better`` (the first method beats the second on ``metric``, in the metric's better direction),
  ``equivalent`` (the two are within ``margin`` of each other), ``ranking`` (the methods in this
  order, best first: every neighbour beats the next), ``within`` (every pair of the methods
  within ``margin``), ``sooner`` (the first reaches the second's final validation ``metric`` in
  fewer epochs);
- ``methods``: the methods, as the report labels them (``lora``, ``dora``, ``qlora``...);
- ``metric``: a recorded field (its direction from :mod:`harness.fields`);
- ``reported``: the effect the source reports, first minus second, in the metric's units
  (0.037 for 3.7 points), where it reports one; ``margin``: the band of ``equivalent`` and
  ``within``; ``params_ratio``: the ratio of trainable parameters the source states (second
  over first), checked on the runs;
- ``task``: the task the claim is about, if only one (else every compared table bears on it);
  ``stage``: ``final`` when only runs of a tuned protocol's final stage bear on it;
- ``settings``: the source's setting (model, data, steps, tuned or not), printed beside the runs';
- ``command``: the command whose runs would bear on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import ConfigError
from harness.paths import conf_dir

TESTS = ("better", "equivalent", "ranking", "within", "sooner")
NEEDS_MARGIN = ("equivalent", "within")
SUPPORTED, CONTRADICTED, UNSETTLED, NO_RUNS = "supported", "contradicted", "not settled", "no runs"


@dataclass
class Judged:
    """What one test of a claim on one table found (:mod:`harness.report.verdicts`)."""

    verdict: str  # SUPPORTED | CONTRADICTED | UNSETTLED
    effect: str
    evidence: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedClaim:
    name: str
    says: str
    source: str
    test: str
    methods: tuple[str, ...]
    metric: str
    command: str
    url: str = ""
    reported: float | None = None
    margin: float | None = None
    params_ratio: float | None = None
    task: str | None = None
    stage: str | None = None
    settings: dict = field(default_factory=dict)


def shipped_dir() -> Path:
    return conf_dir() / "claims"


def load_claims(extra_dirs: list[str | Path] = ()) -> list[PublishedClaim]:
    """The shipped claims, then those of ``extra_dirs`` (a file of the same name replaces the
    shipped one), sorted by name; a malformed file is a :class:`ConfigError` naming it."""
    by_name: dict[str, PublishedClaim] = {}
    for folder in [shipped_dir(), *map(Path, extra_dirs)]:
        if not folder.is_dir():
            raise ConfigError(f"claims folder {folder} does not exist or is not a folder")
        for path in sorted(folder.glob("*.yaml")):
            claim = parse_claim(path)
            by_name[claim.name] = claim
    return [by_name[n] for n in sorted(by_name)]


def parse_claim(path: Path) -> PublishedClaim:
    """One claim file, checked: a :class:`ConfigError` in one line naming the file and the fault."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"claim {path}: not readable YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"claim {path}: must be a mapping of keys (says, source, test, methods, metric, command)")
    allowed = set(PublishedClaim.__dataclass_fields__)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"claim {path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    data.setdefault("name", path.stem)
    missing = [k for k in ("says", "source", "test", "methods", "metric", "command") if not data.get(k)]
    if missing:
        raise ConfigError(f"claim {path}: missing {', '.join(missing)}")
    _check(path, data)
    data["methods"] = tuple(str(m) for m in data["methods"])
    data["settings"] = dict(data.get("settings") or {})
    return PublishedClaim(**data)


def _check(path: Path, data: dict) -> None:
    from harness.fields import FIELDS

    test, methods = data["test"], data["methods"]
    if test not in TESTS:
        raise ConfigError(f"claim {path}: test must be one of {', '.join(TESTS)}, got {test!r}")
    if not isinstance(methods, list) or len(methods) < 2 or (test not in ("ranking", "within") and len(methods) != 2):
        raise ConfigError(f"claim {path}: methods must list two methods"
                          + (" or more" if test in ("ranking", "within") else "") + f" for test {test}")
    if data["metric"] not in FIELDS or FIELDS[data["metric"]].higher_is_better is None:
        raise ConfigError(f"claim {path}: metric {data['metric']!r} is not a recorded field with a direction")
    if test in NEEDS_MARGIN and not (isinstance(data.get("margin"), (int, float)) and data["margin"] > 0):
        raise ConfigError(f"claim {path}: test {test} needs a margin > 0 (the band, in the metric's units)")
    if data.get("stage") not in (None, "final"):
        raise ConfigError(f"claim {path}: stage must be final or absent, got {data['stage']!r}")
