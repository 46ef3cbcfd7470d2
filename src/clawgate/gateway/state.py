"""``$CLAWGATE_HOME/gateway.json``: which gateway serves this home, so that the CLI can find
it and a second gateway can refuse to start.

A gateway writes the file once it listens and removes it when it stops, but only while the
file still names its own pid. The file also holds the fingerprint of the settings the gateway
started with (``config.Fingerprint``: digests, never a key), so that a command can tell when
config.toml or the keys have changed since. A file left by a process that is gone (a crash,
``kill -9``) names nothing: ``live`` says so, and it never stands in anyone's way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from clawgate.config import Fingerprint


@dataclass(frozen=True, slots=True)
class GatewayState:
    url: str
    pid: int
    database: str | None = None  # the database it serves (None: a file from before 0.x)
    #: what its settings were made from (empty: a file from before this was recorded)
    fingerprint: Fingerprint = field(default_factory=Fingerprint)

    def serves(self, database: Path) -> bool:
        """Whether it serves this database: a copied home holds the original's file, which
        names the original's gateway and database."""
        return self.database is None or self.database == str(database.resolve())


def read(path: Path, database: Path | None = None) -> GatewayState | None:
    """What the file says, or None when there is no readable file (or, given ``database``,
    when it names a gateway of another database)."""
    try:
        state = json.loads(path.read_text())
        made_from = state.get("settings") or {}
        found = GatewayState(str(state["url"]), int(state["pid"]), state.get("database"),
                             Fingerprint(str(made_from.get("file", "")),
                                         str(made_from.get("keys", ""))))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if found.pid <= 0:  # (0 or less would name a process group)
        return None
    return None if database is not None and not found.serves(database) else found


def live(path: Path, database: Path) -> GatewayState | None:
    """The gateway of ``database`` the file names, if its process is still alive."""
    state = read(path, database)
    return state if state is not None and alive(state.pid) else None


async def answers(url: str, within: float = 1.0) -> bool:
    """Whether something accepts connections at ``url`` (a live pid may have been reused by
    another program after a crash; a gateway also listens)."""
    parts = urlsplit(url)
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def write(path: Path, url: str, database: Path, fingerprint: Fingerprint) -> None:
    """Record this process as the home's gateway (readable by its owner only)."""
    state = {"url": url, "pid": os.getpid(), "database": str(database.resolve()),
             "startedAt": datetime.now(UTC).isoformat(),
             "settings": {"file": fingerprint.file, "keys": fingerprint.keys}}
    path.write_text(json.dumps(state))
    path.chmod(0o600)


def remove(path: Path) -> None:
    """Remove the file if it names this process (another gateway's stays)."""
    state = read(path)
    if state is not None and state.pid == os.getpid():
        path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True
