"""The gateway token: made on first start, kept in $CLAWGATE_HOME with 0600 permissions.

Every API and WebSocket call must carry it (``Authorization: Bearer <token>``, or for a
browser's WebSocket the ``token`` query parameter), except the health checks.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from clawgate.errors import ConfigError

TOKEN_BYTES = 32


def load_or_create(path: Path) -> str:
    """The token in ``path``, created (readable by its owner only) if there is none."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the gateway token: {exc.strerror}", path=str(path)) from exc
    if token:
        _tighten(path)
        return token
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


def _tighten(path: Path) -> None:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def presented(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request carries, from its header or (WebSocket) query."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def valid(expected: str | None, given: str | None) -> bool:
    """No token expected (auth = "none", loopback only), or the right one, compared in
    constant time."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
