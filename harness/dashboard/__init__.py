"""A local web app over a results store: ``python -m harness.dashboard [--store URL] [--port N]``.

Read-only, served from this machine (127.0.0.1 by default), nothing loaded from or sent
elsewhere. Its views: a Pareto explorer of any two recorded fields with the report's findings
beside it, filters and exports (CSV, the report's PDF and folder), a run's page, two runs
compared example by example, and the runs being trained now. Built on Dash (an extra:
``pip install -e ".[dashboard]"``); it reads the store with :mod:`harness.results` and computes
nothing the report does not (selection, groups, intervals, fronts, findings, McNemar are the
report's own functions). See docs/dashboard.md.
"""
from __future__ import annotations


def create_app(*args, **kwargs):
    """:func:`harness.dashboard.app.create_app` (imported on use: Dash is an extra)."""
    from harness.dashboard.app import create_app as create

    return create(*args, **kwargs)


__all__ = ["create_app"]
