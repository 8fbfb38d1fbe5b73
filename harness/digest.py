"""Content digests of data files and model folders: SHA-256 over the bytes (a folder: over its
files' relative names and bytes), cached on disk by (path, size, modification time), so a large
file is read once. A run's identity (``harness.results.fingerprint``) and a local hub folder's
token cache name are built from them."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.paths import cache_dir

_memo: dict[tuple, str] = {}


def _cache_file() -> Path:
    return cache_dir() / "fingerprints.json"


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    cache_file = _cache_file()
    text_key = json.dumps(key)
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    digest = cache.get(text_key)
    if digest is None:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        cache[text_key] = digest
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            tmp.replace(cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs time
    _memo[key] = digest
    return digest


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes), 16 hex."""
    path = Path(path)
    if path.is_file():
        return _file_digest(path)[:16]
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(f.relative_to(path)).encode() + b"\0" + _file_digest(f).encode())
        return h.hexdigest()[:16]
    return "missing"
