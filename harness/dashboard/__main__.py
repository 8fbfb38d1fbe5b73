"""Open a results store in the browser, on this machine, read-only.

    python -m harness.dashboard [--store URL] [--port N] [--host 127.0.0.1] [--refresh SECONDS]
                                [--reference lora] [--claims-dir DIR] [--plan OVERRIDES]
                                [--budget-gib G] [--plugin MODULE_OR_FILE]

Serves http://127.0.0.1:8050/ (``--port``) until stopped. The store (an SQLite file or a
PostgreSQL database) is only ever read; a role with SELECT rights alone can use it, and a
password in the URL is never shown (better still: ~/.pgpass or PGPASSWORD). The page loads
nothing from elsewhere and nothing is sent anywhere. ``--host 0.0.0.0`` opens it to the network
(anyone who can reach the port can read the store). See docs/dashboard.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from harness.results import DEFAULT_STORE

DEFAULT_PORT = 8050
# The dashboard never fetches anything: a task's texts are read from the local caches only.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_MODE": "disabled"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.dashboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=DEFAULT_STORE, help=f"results store URL or path (default {DEFAULT_STORE})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--refresh", type=float, default=3.0, help="seconds between looks at the store (default 3)")
    p.add_argument("--reference", default="lora", help="method the findings compare with (default lora)")
    p.add_argument("--claims-dir", action="append", default=[], metavar="DIR",
                   help="a folder of claim files besides the shipped ones (repeatable)")
    p.add_argument("--plan", default=None, metavar="OVERRIDES",
                   help='add "what fits your budget" to the findings, as python -m harness.report --plan')
    p.add_argument("--budget-gib", type=float, default=None, help="with --plan: mark what fits in this many GiB")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import a plug-in first (a store backend, a metric, a report section)")
    return p


class InputError(ValueError):
    """Bad input to the command: one line, exit code 2."""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; InputError if it cannot (a port in use, say)."""
    if not 0 < port < 65536:
        raise InputError(f"--port must be between 1 and 65535, got {port}")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot serve on {host}:{port} ({reason}); pass another --port") from None
    return sock


def prepare(args):
    """(the store's view, the report options): every check of the input, before anything serves."""
    from harness.config import ReportConfig
    from harness.dashboard.data import StoreView
    from harness.job.plugins import load_plugins

    load_plugins(args.plugin)
    if args.refresh <= 0:
        raise InputError(f"--refresh must be positive, got {args.refresh:g}")
    options = ReportConfig(reference=args.reference, claims_dirs=args.claims_dir, plan=args.plan,
                           budget_gib=args.budget_gib)
    view = StoreView(args.store)
    view.snapshot(refresh_claims=True)  # read now: a store that cannot be read fails here, in one line
    return view, options


def serve(view, options, args, sock: socket.socket) -> None:
    import signal

    from werkzeug.serving import make_server

    from harness.dashboard.app import create_app
    from harness.dashboard.worker import Worker

    worker = Worker(view.url, args.plugin)
    app = create_app(view, options, args.refresh, worker)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server(args.host, args.port, app.server, threaded=True, fd=sock.fileno())
    n = len(view.snapshot().runs)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"[dashboard] http://{shown}:{args.port}/ — {view.label}: {n} run{'s' * (n != 1)}, read-only; "
          f"Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped like Ctrl-C: the worker goes too
    worker.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()


def main(argv: list[str] | None = None) -> int:
    from harness.results.secrets import hide_passwords

    argv = hide_passwords(list(sys.argv[1:] if argv is None else argv))  # the password: kept apart
    args = parser().parse_args(argv)
    os.environ.update(OFFLINE)
    try:
        import dash  # noqa: F401
        from harness.config import ConfigError
        from harness.results import StoreError
        from harness.results.copy import backend_errors
    except ImportError as exc:
        print(f"error: the dashboard needs {exc.name}: pip install 'peft-harness[dashboard]'", file=sys.stderr)
        return 2
    try:
        view, options = prepare(args)
        sock = listen(args.host, args.port)
    except (InputError, ConfigError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except backend_errors() as exc:  # a database's own refusal while reading: one line too
        from harness.errors import first_line
        from harness.results.store import redact

        print(f"error: {redact(first_line(exc))}", file=sys.stderr)
        return 2
    serve(view, options, args, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
