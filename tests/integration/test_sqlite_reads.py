"""Reads of the SQLite store stay short however big the database grows: the store has one
reader connection, so a read that takes long makes every other read wait behind it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from clawgate.store import sqlite_queries as q
from clawgate.store.sqlite import SqliteStore
from clawgate.testing import ManualClock
from tests.conformance.helpers import finish, running, say


async def _sessions(path: Path, clock: ManualClock, count: int) -> SqliteStore:
    """``count`` sessions, each with two finished runs (made in the same instant, so their
    order is decided by id) and, for every other one, a message waiting."""
    store = await SqliteStore.open(path, clock)
    for n in range(count):
        for _ in range(2):
            await finish(store, await running(store, key=f"s{n}"))
        if n % 2:
            await say(store, "waiting", key=f"s{n}")
        clock.advance(1)
    return store


def _traced(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    statements: list[str] = []
    raw.set_trace_callback(statements.append)
    return raw, statements


async def test_listing_sessions_is_one_statement_however_many_there_are(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await _sessions(tmp_path / "c.db", clock, 12)
    listed = await store.list_sessions(100)
    one = await store.summarize_session("s3")
    await store.close()

    raw, statements = _traced(tmp_path / "c.db")
    assert q.list_sessions(raw, 100) == listed
    assert len(statements) == 1
    assert q.summarize_session(raw, "s3") == one
    assert len(statements) == 2

    assert [s.session.key for s in listed] == [f"s{n}" for n in reversed(range(12))]
    assert [s.pending for s in listed[:4]] == [1, 0, 1, 0]
    assert one is not None
    assert one.latest_run is not None
    latest = max(q.list_runs(raw, one.session.id, 10), key=lambda r: (r.created_at, r.id))
    assert one.latest_run == latest


async def test_listing_sessions_searches_indexes_and_scans_no_runs_or_messages(
    tmp_path: Path, clock: ManualClock
) -> None:
    await (await _sessions(tmp_path / "c.db", clock, 3)).close()
    raw, statements = _traced(tmp_path / "c.db")
    q.list_sessions(raw, 100)
    q.summarize_session(raw, "s1")
    raw.set_trace_callback(None)

    plans = [row[3] for sql in statements for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert plans
    scans = [step for step in plans if step.startswith("SCAN")]
    assert all(step.endswith("USING INDEX sessions_recent") for step in scans), plans
