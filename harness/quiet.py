"""Keep the terminal for the harness's own output: silence libraries' load-time chatter.

Called before the libraries are imported (logger levels apply to loggers created later).
Errors still show; what is kept off the terminal goes to ``library-warnings.log`` in the
harness's cache folder (``~/.cache/peft-harness``, or ``$PEFT_HARNESS_CACHE``); set
HARNESS_VERBOSE=1 to see everything on the terminal.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

from harness.paths import cache_dir

_LOG: logging.Handler | None = None


def _library_log() -> logging.Handler | None:
    """One handler per process that appends library warnings to the cache folder's log file,
    opened when the first record comes (None where the folder cannot be made)."""
    global _LOG
    if _LOG is None:
        folder = cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _LOG = logging.FileHandler(folder / "library-warnings.log", delay=True, encoding="utf-8")
        except OSError:
            return None
        _LOG.setLevel(logging.WARNING)
        _LOG.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(name)s %(levelname)s: %(message)s"))
    return _LOG


def quiet_libraries() -> None:
    if os.environ.get("HARNESS_VERBOSE"):
        return
    # bitsandbytes looks for optional CPU kernels from the hub at import and warns when absent
    # (or untrusted): nothing a harness user can act on, so it goes to the log file only.
    log = _library_log()
    for name in ("bitsandbytes", "bitsandbytes.backends.cpu.ops", "kernels"):
        logger = logging.getLogger(name)
        logger.propagate = False
        if log is not None and log not in logger.handlers:
            logger.addHandler(log)
        elif log is None:
            logger.setLevel(logging.ERROR)
    # A worker stopped by Ctrl-C or its time limit leaves a semaphore that multiprocessing's
    # resource tracker (a process of its own, started with these options) cleans up, warning.
    if "ignore:resource_tracker:UserWarning" not in sys.warnoptions:
        sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    warnings.filterwarnings("ignore", message="Merge lora module to 4-bit linear.*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
