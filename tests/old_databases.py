"""Databases as an older clawgate left them: the migrations up to some version, in WAL mode."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from clawgate.store.sqlite_schema import migrations, statements


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """A database as an older clawgate left it: the migrations up to ``version``."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")  # as every clawgate has opened it
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)")
    for migration in [m for m in migrations() if m.version <= version]:
        for statement in statements(migration.sql):
            raw.execute(statement)
        raw.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-11-01')",
                    (migration.version, migration.name))
    return raw


def add_session(raw: sqlite3.Connection, key: str, text: str) -> None:
    """A session with one message, answered by nothing yet."""
    at = "2026-11-01T00:00:00.000000+00:00"
    raw.execute("INSERT INTO sessions (id, key, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (f"ses_{key}", key, at, at))
    columns = {row[1] for row in raw.execute("PRAGMA table_info(inbound)")}
    named = "session_key" in columns  # from schema 5, a message names its session's key
    raw.execute(
        f"INSERT INTO inbound (id, session_id, channel, text, received_at"
        f"{', session_key' if named else ''}) VALUES (?, ?, 'test', ?, ?{', ?' if named else ''})",
        (f"msg_{key}", f"ses_{key}", text, at, *([key] if named else [])))


def add_owner(
    raw: sqlite3.Connection, heartbeat: datetime, *, pid: int = 4242, host: str = "elsewhere",
    boot_id: str = "another machine", process_start: str = "1",
) -> None:
    """An owner row, as a runtime of that older clawgate registers and renews it."""
    raw.execute(
        "INSERT INTO owners (id, host, pid, boot_id, process_start, started_at, heartbeat_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (f"own_{pid}_{host}", host, pid, boot_id, process_start,
         "2026-11-01T00:00:00.000000+00:00", heartbeat.isoformat(timespec="microseconds")),
    )


def schema_of(path: Path) -> int:
    raw = sqlite3.connect(path)
    try:
        return int(raw.execute("SELECT max(version) FROM schema_migrations").fetchone()[0])
    finally:
        raw.close()


def messages_in(path: Path) -> set[tuple[str, str]]:
    raw = sqlite3.connect(path)
    try:
        return set(raw.execute(
            "SELECT sessions.key, inbound.text FROM inbound JOIN sessions"
            " ON sessions.id = inbound.session_id"))
    finally:
        raw.close()
