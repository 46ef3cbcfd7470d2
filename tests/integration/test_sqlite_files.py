"""The database's files hold every transcript: they are readable by their owner alone."""

from __future__ import annotations

import stat
from pathlib import Path

from clawgate.store.sqlite import SqliteStore
from clawgate.store.sqlite_schema import migrations
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
