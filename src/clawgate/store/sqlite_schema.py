"""Applying the numbered ``.sql`` migrations, all in the caller's ``BEGIN IMMEDIATE``.

Safe when several processes open the same database at once: the version check happens inside
the write lock. Before a database already in use is upgraded, a hook may refuse or prepare
(see ``sqlite_upgrade``); it runs only in the process that does the upgrade.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from clawgate.errors import SchemaTooNew

#: Called before upgrading a database at schema ``version`` (not a new one) to ``target``.
BeforeUpgrade = Callable[[sqlite3.Connection, int, int], None]


def _go_ahead(conn: sqlite3.Connection, version: int, target: int) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    folder = resources.files("clawgate.store") / "migrations" / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def statements(sql: str) -> list[str]:
    """Split a script into complete statements (triggers keep their inner semicolons)."""
    out: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return out


def up_to_date(conn: sqlite3.Connection) -> bool:
    """True when nothing is left to apply (checked without taking the write lock)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return False
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return {m.version for m in migrations()} <= done and not _too_new(done)


def _too_new(done: set[int]) -> bool:
    return bool(done) and max(done) > max((m.version for m in migrations()), default=0)


def migrate(
    conn: sqlite3.Connection, applied_at: str, before_upgrade: BeforeUpgrade = _go_ahead
) -> list[int]:
    """Bring the schema up to date; return the versions applied now."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    known = migrations()
    newest = max((m.version for m in known), default=0)
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    if done and max(done) > newest:
        raise SchemaTooNew(
            f"the database is at schema {max(done)}, this clawgate knows up to {newest}; "
            "upgrade clawgate"
        )
    pending = [m for m in known if m.version not in done]
    if pending and done:
        before_upgrade(conn, max(done), newest)
    applied = []
    for migration in pending:
        for statement in statements(migration.sql):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, applied_at),
        )
        applied.append(migration.version)
    return applied
