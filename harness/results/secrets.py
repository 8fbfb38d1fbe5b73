"""Passwords in PostgreSQL store URLs, kept out of every file and message the harness writes.

A password given in a URL (``postgresql://user:password@host/db``, or ``?password=``) would
otherwise travel with the URL into Hydra's logs and ``.hydra`` files, the job files, the
trackers' records of the command line and the store's rows. :func:`hide_passwords` takes it out
of the command line before anything reads it: the URL keeps ``***`` in its place and the password
goes to this process's environment (:data:`PASSWORDS_ENV`, keyed by user and host), which the
runs' processes on this host inherit and which is never written to a file.
:func:`connect_args` gives the PostgreSQL backend the password apart from the URL (libpq then
has no URL text to repeat in its messages); where no password is known (a host the
environment does not reach), the URL goes without one and libpq falls back to ``PGPASSWORD``
and ``~/.pgpass``.

Percent-encoding is read as libpq reads it (``%40`` is ``@``), and a ``%`` that starts no
escape stays itself instead of making the URL unreadable.
"""
from __future__ import annotations

import json
import os
import re
from urllib.parse import quote, unquote

from harness.results.store import redact

PASSWORDS_ENV = "PEFT_HARNESS_STORE_PASSWORDS"
HIDDEN = "***"
# A PostgreSQL URL on a command line: up to a space, a quote or a comma (Hydra's sweep separator).
_URL = re.compile(r"postgres(?:ql)?://[^\s'\",]*", re.IGNORECASE)
# As libpq splits it: the user info ends at the first ``@`` (none if a ``/`` comes first).
_USERINFO = re.compile(r"^(?P<head>postgres(?:ql)?://(?P<user>[^:/@]*))(?::(?P<password>[^@/]*))?@"
                       r"(?P<host>[^/?#]*)", re.IGNORECASE)
_HOST = re.compile(r"^postgres(?:ql)?://(?P<host>[^/?#]*)", re.IGNORECASE)
_PARAM = re.compile(r"(?P<key>[?&]password=)(?P<password>[^&#]*)", re.IGNORECASE)
_WHERE = re.compile(r"[?&](host|hostaddr|port)=([^&#]*)", re.IGNORECASE)  # a socket's folder, say


def _split(url: str) -> tuple[str, str | None, str]:
    """``url`` with its password as ``***``, the password (None if none or already hidden) and
    the key it is kept under (``user@host``)."""
    password, user, host = None, "", ""
    m = _USERINFO.match(url)
    if m:
        user, host = m["user"], m["host"]
        if m["password"] is not None:
            password = m["password"]
            url = f"{m['head']}:{HIDDEN}@{url[m.end('password') + 1:]}"
    elif _HOST.match(url):
        host = _HOST.match(url)["host"]
    param = _PARAM.search(url)
    if param:
        password = password if password not in (None, HIDDEN) else param["password"]
        url = url[:param.start("password")] + HIDDEN + url[param.end("password"):]
    password = None if password in (None, HIDDEN) else unquote(password)
    return url, password, f"{user}@{host}" + "".join(f";{k}={v}" for k, v in _WHERE.findall(url))


def _known() -> dict[str, str]:
    try:
        return json.loads(os.environ.get(PASSWORDS_ENV) or "{}")
    except json.JSONDecodeError:
        return {}


def hide_passwords(argv: list[str]) -> list[str]:
    """The command line with every PostgreSQL URL's password as ``***``; the passwords are kept
    in this process's environment for :func:`connect_args`."""
    known = _known()

    def hide(m: re.Match) -> str:
        url, password, key = _split(m.group(0))
        if password is not None:
            known[key] = password
        return url

    out = [_URL.sub(hide, arg) for arg in argv]
    if known:
        os.environ[PASSWORDS_ENV] = json.dumps(known)
    return out


def connect_args(url: str) -> tuple[str, str | None]:
    """What to hand libpq for ``url``: the URL without its password, and the password (from the
    URL, else the one :func:`hide_passwords` kept for its user and host; None: libpq's own)."""
    safe, password, key = _split(url)
    password = password if password is not None else _known().get(key)
    if password is None:  # no password known here: PGPASSWORD or ~/.pgpass may have it
        safe = safe.replace(f":{HIDDEN}@", "@", 1)
        safe = _PARAM.sub(lambda m: "?" if m["key"][0] == "?" else "", safe).replace("?&", "?").rstrip("?")
    return safe, password


def scrub(text: str, url: str) -> str:
    """``text`` (a message about ``url``) with no password in it: URLs redacted, and every
    password known here removed as written, decoded or percent-encoded."""
    _, password, _ = _split(url)
    secrets = {password, *_known().values()} - {None}
    forms = {f for s in secrets for f in (s, quote(s, safe=""), quote(s), quote(s, safe=":"))}
    text = redact(text)
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 3:
            text = text.replace(form, HIDDEN)
    return text
