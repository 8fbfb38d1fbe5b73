"""The command line's overrides, parsed by Hydra; Hydra's errors as one line."""
from __future__ import annotations

from harness.errors import ConfigError


def one_line(exc: BaseException) -> str:
    """A Hydra/OmegaConf error (often several lines with a cause) as one line."""
    parts = []
    for e in (exc, exc.__cause__):
        text = str(e or "").strip()
        if text:
            parts.append(text.splitlines()[0].rstrip(".:"))
    text = ": ".join(parts) or type(exc).__name__
    if text.startswith("Ambiguous value"):
        text += " (to sweep over it, add -m)"
    return text


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parse of a command line's overrides; a syntax error is a ConfigError (one line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(overrides)
    except Exception as exc:  # noqa: BLE001 - Hydra's syntax errors
        bad = next((o for o in overrides if not _parses(parser, o)), None)
        key, _, value = (bad or "").partition("=")
        if bad and value and "'" not in value and '"' not in value:
            raise ConfigError(f"cannot read {bad}: Hydra takes a value holding '=', '?', '&', ';', spaces or "
                              f"non-ASCII letters only quoted: {key}='{value}' (in a shell: \"{key}='{value}'\")"
                              ) from None
        raise ConfigError(f"{one_line(exc)} (quote a value that holds '=', '?', '&', ';' or spaces: "
                          f"key='value', e.g. store.url='postgresql://me@/db?host=/run/pg')") from None


def _parses(parser, override: str) -> bool:
    try:
        parser.parse_overrides([override])
        return True
    except Exception:  # noqa: BLE001
        return False
