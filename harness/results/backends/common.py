"""What every store backend shares: how per-example arrays are packed, when a claim's holder is
gone, and the runs table read back with a column for every declared field."""
from __future__ import annotations

import json
import os
import socket
import time
import zlib
from typing import TYPE_CHECKING

from harness.fields import FIELDS

if TYPE_CHECKING:
    import pandas as pd

CLAIM_COLUMNS = ("config_hash", "run_id", "owner", "host", "pid", "claimed_at", "expires_at")
HOLDER_COLUMNS = ("run_id", "owner", "host", "pid", "expires_at")


def pack(array) -> tuple[str, str, bytes]:
    """An array as (dtype, shape as JSON, compressed bytes): one example per row, any dtype."""
    import numpy as np

    a = np.ascontiguousarray(array)
    return a.dtype.str, json.dumps(list(a.shape)), zlib.compress(a.tobytes())


def unpack(dtype: str, shape: str, blob) -> "object":
    import numpy as np

    return np.frombuffer(zlib.decompress(bytes(blob)), dtype=np.dtype(dtype)).reshape(json.loads(shape))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_still_holds(holder: dict, now: float | None = None) -> bool:
    """Whether another run's claim still stands: its lease has not expired and, when it was taken
    on this host, its owner process is alive (a claim from another host lives until its lease
    ends: no host can see another's processes)."""
    now = time.time() if now is None else now
    gone = holder["host"] == socket.gethostname() and not pid_alive(int(holder["pid"]))
    return holder["expires_at"] > now and not gone


def claim_values(config_hash: str, run_id: str, owner: str, lease_s: float) -> tuple:
    """A claims row for this process, taken now."""
    now = time.time()
    return config_hash, run_id, owner, socket.gethostname(), os.getpid(), now, now + lease_s


def with_every_field(df: "pd.DataFrame | None") -> "pd.DataFrame":
    """The runs table with a column for every declared field (empty where the store predates it)."""
    import pandas as pd

    df = pd.DataFrame() if df is None else df
    for name in FIELDS:
        if name not in df.columns:
            df[name] = None
    return df
