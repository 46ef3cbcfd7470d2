"""``clawgate doctor`` on damaged databases: every check finds its damage, exits 1, and
``--fix`` repairs only what it can (runs orphaned by a crashed process).

The schema's guards forbid most of this damage, so each case makes it the way another tool
(the ``sqlite3`` shell, a script, an older clawgate) could: with a guard dropped, the CHECK
constraints ignored, foreign keys off (the shell's default), or a page of the file
overwritten.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from clawgate.clock import SystemClock
from clawgate.domain import (
    ModelRef,
    NewInbound,
    QueueMode,
    QueueSettings,
    Run,
    RunOutcome,
    RunStatus,
)
from clawgate.store.protocol import Claim
from clawgate.store.sqlite import SqliteStore
from tests.acceptance.cli import Home

FOLLOWUP = QueueSettings(mode=QueueMode.FOLLOWUP, debounce_ms=0)
ECHO = ModelRef("echo", "echo")
ELSEWHERE = "own_elsewhere"  # a live owner in another process: it renews its lease
AN_HOUR = timedelta(hours=1)


def _seed(home: Home, deadline: timedelta = AN_HOUR, lease: timedelta = AN_HOUR) -> None:
    """A healthy database: session ``done`` answered, session ``busy`` with a run in
    progress (its owner renewing the lease), session ``waiting`` with a message waiting."""
    asyncio.run(_seed_store(home, deadline, lease))


async def _seed_store(home: Home, deadline: timedelta, lease: timedelta) -> None:
    store = await SqliteStore.open(home.path / "clawgate.db", SystemClock())
    try:
        finished = await _start(store, "done", AN_HOUR, AN_HOUR)
        await store.finish_run(finished.id, ELSEWHERE, RunOutcome(RunStatus.DONE, "hello"))
        await _start(store, "busy", deadline, lease)
        await store.accept_inbound("waiting", NewInbound("cli", "anyone there?"), FOLLOWUP)
    finally:
        await store.close()


async def _start(store: SqliteStore, key: str, deadline: timedelta, lease: timedelta
                 ) -> Run:
    accepted = await store.accept_inbound(key, NewInbound("cli", "hi"), FOLLOWUP)
    claim = await store.claim_next(accepted.session.id, ELSEWHERE, lease, FOLLOWUP)
    assert isinstance(claim, Claim)
    started = await store.start_run(claim.run.id, ELSEWHERE, ECHO,
                                    store.clock.now() + deadline)
    assert started is not None
    return started


def _raw(home: Home, sql: str, *params: object) -> None:
    raw = sqlite3.connect(home.path / "clawgate.db", isolation_level=None)
    try:
        raw.executescript(sql) if not params else raw.execute(sql, params)
    finally:
        raw.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _past_deadline(home: Home) -> None:
    # The owner keeps renewing its lease but does not end its run at the deadline.
    _seed(home, deadline=-2 * timedelta(minutes=1))


def _waiting_in_archived(home: Home) -> None:
    _seed(home)
    _raw(home, "UPDATE sessions SET archived_at = ? WHERE key = 'waiting'", _now())


def _contradictory_run(home: Home) -> None:
    _seed(home)  # the OpenClaw wedge: a run "running" with an end time
    _raw(home, f"PRAGMA ignore_check_constraints = ON;"
               f" UPDATE runs SET ended_at = '{_now()}' WHERE status = 'running';")


def _several_active_runs(home: Home) -> None:
    _seed(home)
    _raw(home, "DROP INDEX runs_one_active;"
               " INSERT INTO runs (id, session_id, status, created_at, owner_id,"
               " lease_expires_at) SELECT 'run_second', session_id, 'queued', created_at,"
               " owner_id, lease_expires_at FROM runs WHERE status = 'running';")


def _unexplained_fate(home: Home) -> None:
    _seed(home)
    _raw(home, f"PRAGMA ignore_check_constraints = ON;"
               f" UPDATE inbound SET fate = 'dropped', decided_at = '{_now()}'"
               f" WHERE fate = 'pending';")


def _foreign_keys(home: Home) -> None:
    _seed(home)  # the runs deleted to save space; their messages and transcript stay
    _raw(home, "DROP TRIGGER runs_no_delete")  # schema 8 refuses it otherwise
    _raw(home, "DELETE FROM runs WHERE status = 'done'")


def _integrity(home: Home) -> None:
    _seed(home)
    path = home.path / "clawgate.db"
    raw = sqlite3.connect(path)
    try:
        size = raw.execute("PRAGMA page_size").fetchone()[0]
        page = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_by_key'"
                           ).fetchone()[0]
    finally:
        raw.close()
    with path.open("r+b") as file:  # a torn write, a bad disk
        file.seek((page - 1) * size)
        file.write(b"\xff" * 16)


DAMAGE: list[tuple[Callable[[Home], None], list[str]]] = [
    (_past_deadline, ["past_deadline"]),
    (_waiting_in_archived, ["waiting_in_archived"]),
    (_contradictory_run, ["contradictory_run", "integrity"]),  # quick_check sees CHECKs
    (_several_active_runs, ["missing_guard", "several_active_runs"]),
    (_unexplained_fate, ["integrity", "unexplained_fate"]),
    (_foreign_keys, ["foreign_keys", "missing_guard"]),
    (_integrity, ["integrity"]),
]


def _dump(home: Home) -> list[str]:
    raw = sqlite3.connect(home.path / "clawgate.db")
    try:
        return list(raw.iterdump())
    finally:
        raw.close()


def test_the_seeded_database_is_healthy(home: Home) -> None:
    _seed(home)
    done = home.run("doctor")
    assert done.returncode == 0, done.stdout
    assert "healthy: every promise holds" in done.stdout


@pytest.mark.parametrize(("damage", "codes"), DAMAGE,
                         ids=[damage.__name__.strip("_") for damage, _ in DAMAGE])
def test_doctor_finds_the_damage_and_fix_leaves_what_it_cannot_repair(
    home: Home, damage: Callable[[Home], None], codes: list[str]
) -> None:
    damage(home)
    before = _dump(home)

    found = home.run("doctor", "--json")
    fixed = home.run("doctor", "--fix")

    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert report["healthy"] is False
    assert sorted(p["code"] for p in report["problems"]) == codes
    assert not any(p["fixable"] for p in report["problems"])
    assert fixed.returncode == 1, fixed.stderr
    for code in codes:
        assert f"PROBLEM   {code}: " in fixed.stdout
    assert "fixed" not in fixed.stdout
    assert "--fix repairs this" not in fixed.stdout
    assert _dump(home) == before  # nothing it cannot repair is touched


def test_fix_repairs_an_orphaned_run_and_still_reports_the_rest(home: Home) -> None:
    _seed(home, lease=-timedelta(seconds=1))  # the busy run's owner stopped renewing
    _raw(home, "UPDATE sessions SET archived_at = ? WHERE key = 'waiting'", _now())

    found = home.run("doctor")
    fixed = home.run("doctor", "--fix")

    assert found.returncode == 1
    assert "PROBLEM   orphaned_run: " in found.stdout
    assert "(clawgate doctor --fix repairs this)" in found.stdout
    assert fixed.returncode == 1
    assert "marked interrupted" in fixed.stdout
    assert "orphaned_run" not in fixed.stdout
    assert "PROBLEM   waiting_in_archived: " in fixed.stdout
    runs = home.json("sessions", "show", "busy")["runs"]
    assert [r["status"] for r in runs] == ["interrupted"]
