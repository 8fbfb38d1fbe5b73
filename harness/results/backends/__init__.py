"""Store backends that ship with the harness, one module each; every module in this folder is
imported (and so registers its URL scheme in ``harness.results.store.STORE_BACKENDS``) the first
time a store is opened or checked."""
from __future__ import annotations

from harness.registry import import_submodules

import_submodules(__name__, __path__)
