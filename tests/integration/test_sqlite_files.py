"""The database's files hold every transcript: they are readable by their owner alone; and
the WAL file beside the database does not stay big while the gateway runs."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clawgate.store.sqlite import SqliteStore
from clawgate.store.sqlite_schema import migrations
from clawgate.store.sqlite_worker import WAL_SIZE_LIMIT
from clawgate.testing import ManualClock
from tests.conformance.helpers import say
from tests.old_databases import database_at

PRIVATE = {"clawgate.db": 0o600, "clawgate.db-wal": 0o600, "clawgate.db-shm": 0o600}


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


async def test_the_database_files_are_private_to_their_owner(
    tmp_path: Path, clock: ManualClock, umask_022: None
) -> None:
    store = await SqliteStore.open(tmp_path / "clawgate.db", clock)
    await say(store, "a private matter")
    modes = _modes(tmp_path)
    await store.close()
    assert modes == PRIVATE


async def test_a_database_left_readable_by_everyone_is_made_private(
    tmp_path: Path, clock: ManualClock, umask_022: None
) -> None:
    path = tmp_path / "clawgate.db"
    # As an earlier clawgate created it, and still has it open.
    raw = database_at(path, max(m.version for m in migrations()))
    assert set(_modes(tmp_path).values()) == {0o644}

    store = await SqliteStore.open(path, clock)
    modes = _modes(tmp_path)
    await store.close()
    raw.close()
    assert modes == PRIVATE


@contextmanager
def _snapshot(path: Path) -> Iterator[None]:
    """Another connection reading throughout, as clients listing sessions without a pause
    keep one read going: SQLite cannot start the WAL afresh under it."""
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN")
        raw.execute("SELECT count(*) FROM sessions").fetchone()
        yield
        raw.execute("COMMIT")
    finally:
        raw.close()


def _wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def _burst(store: SqliteStore, megabytes: int) -> None:
    for n in range(megabytes * 40):
        await say(store, "x" * 25_000, key=f"s{n}")


async def test_a_wal_file_grown_past_the_limit_is_emptied_once_writes_pause(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    store = await SqliteStore.open(path, clock, tidy_after=0.05)
    await say(store, "the first")
    with _snapshot(path):
        await _burst(store, WAL_SIZE_LIMIT // 1_000_000 + 2)
        grown = _wal_size(path)
    for _ in range(200):  # the reader let go; no more writes come
        if _wal_size(path) == 0:
            break
        await asyncio.sleep(0.05)
    emptied = _wal_size(path)
    await store.close()
    assert grown > WAL_SIZE_LIMIT
    assert emptied == 0


async def test_a_wal_file_grown_past_the_limit_is_cut_back_by_the_next_writes(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    store = await SqliteStore.open(path, clock, tidy_after=3600)  # no pause long enough
    await say(store, "the first")
    with _snapshot(path):
        await _burst(store, WAL_SIZE_LIMIT // 1_000_000 + 2)
        grown = _wal_size(path)
    for _ in range(3):  # the first copies the WAL into the database, a later one restarts it
        await say(store, "and on")
    cut = _wal_size(path)
    await store.close()
    assert grown > WAL_SIZE_LIMIT
    assert cut <= WAL_SIZE_LIMIT
