"""Check a whole command line before anything trains: bad input fails fast, in one line.

Every job of the command (every point of a multirun grid) is composed and validated here, its
data file and model folder looked for, its local data loaded and checked as a run would load it
(:mod:`harness.tasks.check`: each file read once), and its store opened read-only. Anything
wrong stops the command with one line and exit code 2, before any training, store untouched.
What only shows while a job runs (out of memory, a target module the model lacks, NaN loss) is
recorded as that job's failure instead, and the sweep goes on.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.results.identity import config_hash
from harness.sweep.launchers import check_ray_address, check_store_reach
from harness.sweep.limits import out_of_reach
from harness.sweep.overrides import one_line, parse_overrides
from harness.paths import conf_dir
from harness.job.plugins import plugins_in_overrides
from harness.registry import unknown_name_message
from harness.results.store import check_store
from harness.job.validation import register_schemas, validate


class PreflightError(ValueError):
    """A command line that cannot run; the message is one line."""


@dataclass
class Launch:
    multirun: bool
    jobs: list[list[str]]  # each job's overrides, in launch order
    swept: set[str] = field(default_factory=set)  # keys a multirun sweeps over
    hashes: list[str] = field(default_factory=list)  # each job's config hash, same order
    stores: list[str] = field(default_factory=list)  # each job's store.url, same order
    configs: list[dict] = field(default_factory=list)  # each job's resolved config, same order
    # A sweeper that picks its points while it runs (Optuna): only the fixed part of the command
    # is checked here, and its outcome is read from the rows written while it ran.
    dynamic: bool = False

    @property
    def jobs_in_stores(self) -> list[tuple[str, dict]]:
        """(store url, resolved config) of every job: where to look for its rows, and which."""
        return list(zip(self.stores, self.configs))


def parse_command_line(argv: list[str]):
    """Hydra's own argument parser; None when Hydra is asked for help or info, not for a run."""
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:
        return None  # let Hydra print its usage error
    if (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
            or args.experimental_rerun or args.config_path or args.config_dir):
        return None
    return args


def expand(overrides: list[str], multirun: bool,
           dynamic: bool = False) -> tuple[list[list[str]], set[str]]:
    """The jobs a command launches (the grid of a multirun, or the one run), and the swept keys.
    For a ``dynamic`` sweeper, one job: the command without its sweeps (their defaults)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = parse_overrides(overrides)
    if not multirun:
        return [list(overrides)], set()
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    if dynamic:
        return [[o.input_line for o in parsed if not o.is_sweep_override()]], swept
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch], swept


def _sweeper_params(overrides: list[str], config_name: str) -> list[str]:
    """Sweeps a config declares itself (``hydra.sweeper.params``, e.g. in an experiment preset),
    as overrides; the command line's own values for the same keys win, as in Hydra's sweeper."""
    from hydra import compose

    parsed = parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()
             and (not _is_hydra(o.input_line) or _is_searchpath(o.input_line))]
    try:
        params = compose(config_name=config_name, overrides=fixed,
                         return_hydra_config=True).hydra.sweeper.get("params") or {}
    except Exception:  # noqa: BLE001 - the job checks below report composition errors
        return []
    given = {o.key_or_group for o in parsed}
    return [f"{key}={value}" for key, value in params.items() if key not in given]


def _dynamic_sweeper(overrides: list[str], config_name: str) -> bool:
    """Whether the command's Hydra sweeper is not the basic grid sweeper (e.g. Optuna)."""
    from hydra import compose

    fixed = [o for o in overrides if "," not in o and "(" not in o]
    try:
        sweeper = compose(config_name=config_name, overrides=fixed, return_hydra_config=True).hydra.sweeper
    except Exception:  # noqa: BLE001 - the job checks report composition errors
        return False
    return not str(sweeper.get("_target_", "")).endswith("BasicSweeper")


def _is_hydra(override: str) -> bool:
    return override.lstrip("+~").startswith(("hydra.", "hydra/"))


def _is_searchpath(override: str) -> bool:
    return override.lstrip("+~").startswith("hydra.searchpath")


def check_group_choices(job: list[str]) -> None:
    """``method=lorra`` -> one line with the known methods and the closest match. The options of
    a group are the YAML files of every folder on Hydra's search path."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    searchpath = [o for o in job if _is_searchpath(o)]
    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    for override in OverridesParser.create().parse_overrides([o for o in job if not _is_hydra(o)]):
        group = override.key_or_group
        if group not in groups or override.is_delete():
            continue
        value = override.value()
        options = [o for o in loader.get_group_options(group, overrides=searchpath)
                   if not o.endswith("_schema")]
        if isinstance(value, str) and value not in options:
            raise PreflightError(unknown_name_message(group, value, options))


def check_files(cfg, data=None) -> None:
    """Data and model files that a job names must exist and be readable; the store must be one
    this harness can write (its backend checks, creating and changing nothing); the task's local
    data must make the task (``data``: a :class:`harness.tasks.check.DataCheck`, one read a file)."""
    from harness.models.sources import resolve_source
    from harness.tasks import TASK_LOADERS, data_path_hint

    path = cfg.task.data_path
    hint = data_path_hint(cfg.task.loader, cfg.task.name)
    if not path and hint:
        raise PreflightError(f"task {cfg.task.name} needs a data file: set task.data_path={hint}")
    if path:
        p = Path(path).expanduser()
        if not p.exists():
            reads = cfg.task.loader in TASK_LOADERS and TASK_LOADERS.info(cfg.task.loader).get("reads")
            raise PreflightError(f"task.data_path: no such {reads or 'file'}: {p}")
        if not os.access(p, os.R_OK):
            raise PreflightError(f"task.data_path: cannot read {p} (permission denied)")
    source = cfg.model.source
    if not cfg.model.tiny:
        if source.startswith("package:"):
            try:
                resolve_source(source)
            except FileNotFoundError as exc:
                raise PreflightError(f"model.source: {exc}") from None
        elif source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().is_dir():
            raise PreflightError(f"model.source: no such model folder: {source}")
    check_store(cfg.store.url)
    if data is not None:
        from harness.tasks import TaskDataError

        try:
            data(cfg.task)
        except TaskDataError as exc:
            raise PreflightError(str(exc)) from None
    reason = out_of_reach(cfg)  # a length past the model's positions, hub data offline
    if reason:
        raise PreflightError(reason)
    if data is not None and path:
        try:
            data.cut_note(cfg)
        except TaskDataError as exc:  # an example the run's tokenizer cannot fit (an answer past max_length)
            raise PreflightError(str(exc)) from None


def _check_job(job: list[str], config_name: str, data=None) -> tuple[str, dict]:
    """Compose, validate and look for the files of one job; return its store and its config."""
    from hydra import compose

    check_group_choices(job)
    job = [o for o in job if not _is_hydra(o) or _is_searchpath(o)]
    try:
        composed = compose(config_name=config_name, overrides=job)
    except Exception as exc:  # noqa: BLE001 - composition errors, made one line
        raise PreflightError(one_line(exc)) from None
    try:
        cfg = validate(composed)
        container = OmegaConf.to_container(composed, resolve=True)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PreflightError(one_line(exc)) from None
    check_files(cfg, data)
    return cfg.store.url, container


def preflight(argv: list[str]) -> Launch | None:
    """Check every job of this command line; raise PreflightError/ConfigError/StoreError.
    Notes on the data (rows left out for a missing label) go to stderr once all jobs passed."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.tasks.check import DataCheck, remember_notes

    args = parse_command_line(argv)
    if args is None:
        return None
    register_schemas(plugins_in_overrides(args.overrides))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            overrides = list(args.overrides)
            dynamic = bool(args.multirun) and _dynamic_sweeper(overrides, args.config_name or "config")
            if args.multirun and not dynamic:
                overrides = _sweeper_params(overrides, args.config_name or "config") + overrides
            plan = Launch(bool(args.multirun), *expand(overrides, bool(args.multirun), dynamic))
            plan.dynamic = dynamic
            data = DataCheck()
            for job in plan.jobs:
                try:
                    store, container = _check_job(job, args.config_name or "config", data)
                    plan.stores.append(store)
                    plan.configs.append(container)
                    plan.hashes.append(config_hash(container))
                except (PreflightError, ConfigError) as exc:
                    if not plan.multirun:
                        raise
                    point = " ".join(o for o in job if o.split("=")[0].lstrip("+~") in plan.swept)
                    raise PreflightError(f"{exc} (grid point: {point})") from None
    finally:
        GlobalHydra.instance().clear()
    check_ray_address(list(args.overrides))
    check_store_reach(list(args.overrides), plan.stores)
    for note in data.notes:
        print(f"[harness] note: {note}", file=sys.stderr)
    remember_notes(data.cut_keys)
    return plan
