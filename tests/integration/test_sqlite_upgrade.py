"""Upgrading an older database: never under a running older clawgate, never without a copy."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from clawgate.domain import DropReason, ModelRef, OwnerInfo, Role
from clawgate.errors import SchemaUpgradeBlocked, StoreError
from clawgate.runtime.owner import running_here, this_process
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.sqlite import SqliteStore
from clawgate.store.sqlite_schema import migrations
from clawgate.store.sqlite_upgrade import live_owners
from clawgate.testing import ManualClock, ScriptedProvider
from tests.conformance.helpers import claim, running, say
from tests.old_databases import add_owner, add_session, database_at, messages_in, schema_of

NEWEST = max(m.version for m in migrations())


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def _old_database(path: Path, *, version: int = 4) -> sqlite3.Connection:
    raw = database_at(path, version)
    add_session(raw, "s1", "hello from before")
    return raw


def _owned_by_this_process(folder: Path, heartbeat: datetime, process_start: str) -> Path:
    """A schema 5 database whose owner has this process's pid, on this machine."""
    me = this_process(heartbeat)
    path = folder / "clawgate.db"
    raw = _old_database(path, version=5)
    add_owner(raw, heartbeat, pid=me.pid, host=me.host, boot_id=me.boot_id,
              process_start=process_start)
    raw.close()
    return path


async def test_an_older_database_a_running_clawgate_uses_is_refused_and_left_as_it_was(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    raw = _old_database(path)
    add_owner(raw, clock.now() - timedelta(seconds=5))  # a gateway that renewed 5 s ago
    raw.close()
    before = path.read_bytes()

    with pytest.raises(SchemaUpgradeBlocked) as refused:
        await SqliteStore.open(path, clock)

    message = str(refused.value)
    assert "pid 4242 on elsewhere" in message
    assert "Stop it, then run clawgate again to upgrade" in message
    assert path.read_bytes() == before
    assert schema_of(path) == 4
    assert sorted(_modes(tmp_path)) == ["clawgate.db"]  # no copy, nothing left behind


async def test_an_older_database_nobody_uses_is_upgraded_and_kept_as_it_was(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture, umask_022: None
) -> None:
    path = tmp_path / "clawgate.db"
    raw = _old_database(path)
    add_owner(raw, clock.now() - timedelta(seconds=61))  # stopped renewing a minute ago
    raw.close()
    backup = tmp_path / "clawgate.db.bak-v4"
    backup.write_bytes(b"left by an earlier upgrade that was rolled back")

    with caplog.at_level(logging.WARNING):
        store = await SqliteStore.open(path, clock)
    await say(store, "said after the upgrade")
    await store.close()

    assert schema_of(path) == NEWEST
    assert messages_in(path) == {("s1", "hello from before"), ("s1", "said after the upgrade")}
    assert schema_of(backup) == 4  # the copy opens as the old schema, with the old data
    assert messages_in(backup) == {("s1", "hello from before")}
    assert f"schema 4 database is kept as {backup}" in caplog.text
    assert sorted(_modes(tmp_path)) == ["clawgate.db", "clawgate.db.bak-v4"]  # one copy
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # as private as the database


async def test_an_owner_on_this_machine_counts_while_its_process_runs_whatever_its_heartbeat(
    tmp_path: Path, clock: ManualClock
) -> None:
    # This very process stands for a live gateway that has not renewed for an hour.
    me = this_process(clock.now())
    path = _owned_by_this_process(tmp_path, clock.now() - timedelta(hours=1), me.process_start)

    with pytest.raises(SchemaUpgradeBlocked, match=f"pid {me.pid} on {me.host}"):
        await SqliteStore.open(path, clock, running_here(clock.now()))
    assert schema_of(path) == 5


async def test_an_owner_on_this_machine_whose_process_is_gone_holds_nothing_up(
    tmp_path: Path, clock: ManualClock
) -> None:
    # It renewed a second ago, then crashed: its pid now belongs to another process (us).
    path = _owned_by_this_process(tmp_path, clock.now() - timedelta(seconds=1), "0")

    store = await SqliteStore.open(path, clock, running_here(clock.now()))
    await store.close()
    assert schema_of(path) == NEWEST
    assert schema_of(tmp_path / "clawgate.db.bak-v5") == 5


async def test_several_processes_opening_an_older_database_at_once_upgrade_it_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    _old_database(path).close()

    stores = await asyncio.gather(*(SqliteStore.open(path, clock) for _ in range(4)))
    await say(stores[3], "after")
    for store in stores:
        await store.close()

    raw = sqlite3.connect(path)
    versions = [row[0] for row in raw.execute("SELECT version FROM schema_migrations")]
    raw.close()
    assert versions == [m.version for m in migrations()]
    assert messages_in(tmp_path / "clawgate.db.bak-v4") == {("s1", "hello from before")}


async def test_when_the_copy_cannot_be_made_nothing_is_upgraded(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    _old_database(path).close()
    (tmp_path / "clawgate.db.bak-v4").mkdir()  # something in the way

    with pytest.raises(StoreError, match="could not copy the database"):
        await SqliteStore.open(path, clock)
    assert schema_of(path) == 4
    assert sorted(_modes(tmp_path)) == ["clawgate.db", "clawgate.db.bak-v4"]


async def test_a_running_clawgate_renews_its_heartbeat_so_another_machine_sees_it_live(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    store = await SqliteStore.open(path, clock)
    settings = RuntimeSettings(default_model=ModelRef("scripted", "m1"))
    runtime = Runtime(store, {"scripted": ScriptedProvider("scripted")}, settings)
    await runtime.start(supervise=False)
    try:
        for _ in range(24):  # two minutes of ticks, with nothing to do but stay alive
            clock.advance(settings.renew_every.total_seconds())
            await runtime.tick()
        raw = sqlite3.connect(path)
        try:  # what a newer clawgate on another machine reads before upgrading
            seen = live_owners(raw, clock.now(), running=None)
        finally:
            raw.close()
    finally:
        await runtime.close(grace=0)
        await store.close()
    assert [(owner.id, beat) for owner, beat in seen] == [(runtime.owner.id, clock.now())]


async def test_owners_silent_for_over_a_day_are_forgotten_when_another_starts(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    store = await SqliteStore.open(path, clock)
    for name in ("own_gone", "own_renewing", "own_busy"):
        await store.register_owner(OwnerInfo(name, "elsewhere", 4242, "b", "1", clock.now()))
    await running(store, owner="own_busy")  # it crashed mid-run: its run still names it
    clock.advance(timedelta(hours=23).total_seconds())
    await store.renew_leases("own_renewing", frozenset(), timedelta(seconds=15))
    clock.advance(timedelta(hours=2).total_seconds())

    await store.register_owner(OwnerInfo("own_new", "here", 1, "b", "1", clock.now()))
    await store.close()

    raw = sqlite3.connect(path)
    owners = {row[0] for row in raw.execute("SELECT id FROM owners")}
    raw.close()
    assert owners == {"own_renewing", "own_busy", "own_new"}


async def test_summaries_a_reset_left_unsent_are_settled_by_the_upgrade_to_schema_9(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "clawgate.db"
    raw = database_at(path, 8)
    at = "2026-11-01T00:00:00.000000+00:00"
    add_session(raw, "s1", "one")
    raw.execute("INSERT INTO runs (id, session_id, status, created_at, owner_id,"
                " lease_expires_at) VALUES ('run_1', 'ses_s1', 'queued', ?, 'own_x', ?)",
                (at, at))
    for message_id, run_told in (("msg_told", "run_1"), ("msg_left", None)):
        raw.execute("INSERT INTO inbound (id, session_id, session_key, channel, text,"
                    " received_at, fate, reason, decided_at) VALUES (?, 'ses_s1', 's1', 'test',"
                    " 'dropped', ?, 'dropped', 'queue_full_summarized', ?)",
                    (message_id, at, at))
        if run_told:
            raw.execute("INSERT INTO queue_summaries VALUES (?, ?)", (message_id, run_told))
    raw.execute("UPDATE runs SET status = 'interrupted', ended_at = ?, runtime_ms = 0", (at,))
    raw.execute("UPDATE sessions SET archived_at = ?", (at,))  # a /new of schema 8
    raw.close()

    store = await SqliteStore.open(path, clock)
    told, left = await store.get_message("msg_told"), await store.get_message("msg_left")
    findings = await store.audit()
    await store.close()

    assert told is not None
    assert (told.summarized_in, told.summary_cleared) == ("run_1", None)
    assert left is not None
    assert (left.summarized_in, left.summary_cleared) == (None, DropReason.RESET)
    assert [f.code for f in findings if f.code.startswith("summary")] == []


def _at(second: int) -> str:
    return f"2026-11-01T00:00:{second:02d}.000000+00:00"


def _dropped(raw: sqlite3.Connection, key: str, message_id: str, reason: str, at: str) -> None:
    raw.execute("INSERT INTO inbound (id, session_id, session_key, channel, text, received_at,"
                " fate, reason, decided_at) VALUES (?, ?, ?, 'test', ?, ?, 'dropped', ?, ?)",
                (message_id, f"ses_{key}", key, f"{message_id} text", at, reason, at))


def _killed(raw: sqlite3.Connection, key: str, run_id: str, at: str) -> None:
    raw.execute("INSERT INTO runs (id, session_id, status, created_at, owner_id,"
                " lease_expires_at) VALUES (?, ?, 'queued', ?, 'own_x', ?)",
                (run_id, f"ses_{key}", _at(0), _at(0)))
    raw.execute("UPDATE runs SET status = 'killed', ended_at = ?, runtime_ms = 0 WHERE id = ?",
                (at, run_id))


async def test_summaries_a_stop_left_unsent_are_settled_by_the_upgrade_to_schema_9(
    tmp_path: Path, clock: ManualClock
) -> None:
    # Schema 8's stop dropped the waiting messages, but left the summary of messages dropped
    # from a full queue for the next reply, however unrelated.
    path = tmp_path / "clawgate.db"
    raw = database_at(path, 8)
    for key in ("waiting", "idle", "before"):
        add_session(raw, key, "said before the upgrade")
        _dropped(raw, key, f"sum_{key}", "queue_full_summarized", _at(2))
    _dropped(raw, "waiting", "cleared_by_stop", "stopped", _at(3))  # stop, messages waiting
    _killed(raw, "idle", "run_stopped", _at(3))  # a stop with nothing waiting
    _dropped(raw, "before", "stopped_earlier", "stopped", _at(1))  # stops before the drop
    _killed(raw, "before", "run_stopped_earlier", _at(1))
    raw.close()

    store = await SqliteStore.open(path, clock)
    settled = {key: await store.get_message(f"sum_{key}") for key in ("waiting", "idle", "before")}
    told = await _next_reply_is_told(store, "before")
    not_told = [key for key in ("waiting", "idle") if not await _next_reply_is_told(store, key)]
    findings = await store.audit()
    await store.close()

    assert {key: (m and (m.summarized_in, m.summary_cleared)) for key, m in settled.items()} == {
        "waiting": (None, DropReason.STOPPED), "idle": (None, DropReason.STOPPED),
        "before": (None, None)}  # no stop since: the next reply is told, as it would be now
    assert told
    assert not_told == ["waiting", "idle"]
    assert [f.code for f in findings if f.code.startswith("summary")] == []


async def _next_reply_is_told(store: SqliteStore, key: str) -> bool:
    """Whether the next reply in ``key`` is told of messages dropped from a full queue."""
    session = await store.get_session(key)
    assert session is not None
    claimed = await claim(store, session.id)
    notes = [e.text for e in await store.transcript(session.id)
             if e.run_id == claimed.run.id and e.role is Role.NOTE]
    return any("dropped from a full queue" in note for note in notes)
