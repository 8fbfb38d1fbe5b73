"""The launcher a command runs its jobs with, and whether its results store can be reached from
where those jobs run.

Hydra's launcher plugins run the jobs: ``basic`` (one after another, in this process's workers),
``joblib`` (parallel on this machine), ``ray`` (a private Ray instance on this machine),
``ray_cluster`` (this project's preset of ``ray`` for a running Ray cluster, see
``conf/hydra/launcher/ray_cluster.yaml``), ``submitit_local`` and ``submitit_slurm`` (submitit).
A job on another host cannot share an SQLite file (its locks do not hold over network file
systems, and a local path names another disk there): a SLURM sweep with an SQLite store is
refused before anything is submitted, and a Ray cluster sweep with one gets a note.
"""
from __future__ import annotations

import sys

from harness.errors import ConfigError
from harness.results.store import redact, store_scheme

# Launchers whose jobs run on other hosts, always or when the cluster has several machines.
OTHER_HOSTS = {"submitit_slurm": "SLURM runs the jobs on the cluster's nodes",
               "ray_aws": "Ray's AWS launcher runs the jobs on cloud machines"}
MAYBE_OTHER_HOSTS = {"ray_cluster": "a Ray cluster may run jobs on its other machines"}
SHARED = "store.url=postgresql://user@host/database, a store every host reaches"


def launcher_of(overrides: list[str]) -> str:
    """The ``hydra/launcher=`` choice of a command line (the last one given), else ``basic``."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra/launcher=")]
    return chosen[-1] if chosen else "basic"


def check_ray_address(overrides: list[str]) -> None:
    """ConfigError unless a Ray cluster answers at the ``hydra.launcher.ray.init.address`` given
    as ``host:port`` (or ``ray://host:port``): Ray itself waits minutes on a wrong address."""
    import socket

    given = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra.launcher.ray.init.address=")]
    address = given[-1].strip("'\"") if given else ("auto" if launcher_of(overrides) == "ray_cluster" else "")
    if address == "auto":
        _find_local_ray()
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # local, null: a private instance the launcher starts
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"hydra.launcher.ray.init.address={address}: no Ray cluster answers there "
                          f"({exc.strerror or exc}); start one with `ray start --head` and give the "
                          f"address it prints") from None


def _find_local_ray() -> None:
    """ConfigError unless Ray's own lookup for ``address=auto`` ($RAY_ADDRESS, then the cluster
    started on this machine) finds a cluster."""
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        return  # no Ray here, or its lookup moved: the launcher reports it
    try:
        get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise ConfigError("hydra/launcher=ray_cluster: no running Ray cluster found (address=auto looks "
                          "at $RAY_ADDRESS and this machine); start one with `ray start --head`, or give "
                          "hydra.launcher.ray.init.address=<host:port>") from None


def check_store_reach(overrides: list[str], stores: list[str]) -> None:
    """ConfigError when jobs on other hosts would write an SQLite file; a note when they might."""
    name = launcher_of(overrides)
    local = sorted({redact(s) for s in stores if store_scheme(s) == "sqlite"})
    if not local:
        return
    if name in OTHER_HOSTS:
        raise ConfigError(f"hydra/launcher={name}: {OTHER_HOSTS[name]}, which cannot share the SQLite "
                          f"store {local[0]}; give {SHARED}")
    if name in MAYBE_OTHER_HOSTS:
        print(f"[harness] note: hydra/launcher={name} with the SQLite store {local[0]}: right for a "
              f"cluster of one machine; {MAYBE_OTHER_HOSTS[name]}, which need {SHARED}", file=sys.stderr)
