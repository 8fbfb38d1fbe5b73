"""Where things are: the configs (``harness/conf`` in an installed package, ``conf/`` in a source
tree) and the harness's cache folder."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# Set by ``python -m harness`` for the runs it starts: its process id and host (a run on another
# host is a cluster node's), and the notes its preflight printed (harness.tasks.check).
SWEEP_PID_ENV = "PEFT_HARNESS_SWEEP_PID"
SWEEP_HOST_ENV = "PEFT_HARNESS_SWEEP_HOST"


def conf_dir() -> Path:
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra config found next to {PACKAGE_DIR}; reinstall the package")


def cache_dir() -> Path:
    """The harness's cache folder: ``$PEFT_HARNESS_CACHE``, else ``~/.cache/peft-harness``."""
    return Path(os.environ.get("PEFT_HARNESS_CACHE") or Path.home() / ".cache" / "peft-harness")
