"""When a chat last left each session, so the next one can show the replies that ended since.

A reply can end when no chat is there to show it: a message kept over a gateway restart is
answered once the gateway is back, after the chat that sent it has ended. ``clawgate chat``
records, in ``chat_seen.json`` in the clawgate home, when it last showed a reply's end on a
session and when it left it; the next chat on that session shows first the replies that ended
after that (``earlier, 12:03: ...``).
The file is private (mode 0600: session keys can say something) and small (the latest
``KEPT`` sessions); a file that cannot be read or written only means nothing is shown.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path

FILE = "chat_seen.json"
KEPT = 1000  # sessions remembered, the ones left most recently


def left_at(home: Path, key: str) -> datetime | None:
    """When a chat last left the session ``key`` (None: never, as far as is recorded)."""
    value = _read(home / FILE).get(key)
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when if when is not None and when.tzinfo is not None else None


def record_leaving(home: Path, key: str, when: datetime) -> None:
    """Record that a chat left the session ``key`` at ``when`` (timezone-aware)."""
    path = home / FILE
    seen = _read(path)
    seen.pop(key, None)
    seen[key] = when.isoformat()
    kept = dict(list(seen.items())[-KEPT:])
    partial = path.with_name(f".{FILE}.{os.getpid()}")
    with contextlib.suppress(OSError):
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(kept, file)
        os.replace(partial, path)  # (two chats leaving at once: one of them wins, whole)


def _read(path: Path) -> dict[str, object]:
    try:
        seen = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return seen if isinstance(seen, dict) else {}
