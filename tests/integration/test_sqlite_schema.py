"""The SQLite schema enforces the promises by itself, even against hand-written SQL."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from clawgate.domain import TRANSITIONS, Cooldown, DropReason, NewInbound, RunStatus
from clawgate.errors import SchemaTooNew, StoreBusy, StoreCorrupt
from clawgate.store.sqlite import SqliteStore
from clawgate.store.sqlite_schema import migrations, statements
from clawgate.store.sqlite_worker import translate
from clawgate.testing import ManualClock
from tests.conformance.helpers import FOLLOWUP, claim, finish, running, say
from tests.old_databases import database_at


@pytest.fixture
async def db(tmp_path: Path, clock: ManualClock) -> tuple[SqliteStore, sqlite3.Connection]:
    store = await SqliteStore.open(tmp_path / "c.db", clock)
    run = await running(store, "hi")
    await finish(store, run, "reply")
    await running(store, "again", key="s2")
    raw = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    return store, raw


def _refused(raw: sqlite3.Connection, sql: str, *params: object) -> str:
    with pytest.raises(sqlite3.IntegrityError) as caught:
        raw.execute(sql, params)
    return str(caught.value)


async def test_a_finished_run_cannot_be_set_running_again(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    message = _refused(raw, "UPDATE runs SET status = 'running' WHERE status = 'done'")
    assert "finished run cannot change" in message


async def test_running_with_an_end_time_is_unrepresentable(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    _refused(raw, "UPDATE runs SET ended_at = started_at WHERE status = 'running'")


async def test_terminal_without_end_time_or_runtime_is_unrepresentable(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    _refused(raw, "UPDATE runs SET status = 'done' WHERE status = 'running'")
    _refused(
        raw, "UPDATE runs SET status = 'killed', ended_at = started_at WHERE status = 'running'"
    )


async def test_a_second_active_run_in_a_session_is_refused(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    message = _refused(
        raw,
        "INSERT INTO runs (id, session_id, status, created_at, owner_id, lease_expires_at)"
        " SELECT 'run_x', session_id, 'queued', created_at, owner_id, lease_expires_at"
        " FROM runs WHERE status = 'running'",
    )
    assert "UNIQUE" in message


async def test_a_decided_fate_and_what_was_said_cannot_change(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    assert "decided once" in _refused(raw, "UPDATE inbound SET fate = 'pending', run_id = NULL,"
                                      " decided_at = NULL WHERE fate = 'answered'")
    assert "cannot change" in _refused(raw, "UPDATE inbound SET text = 'rewritten'")
    assert "cannot be deleted" in _refused(raw, "DELETE FROM inbound")


async def test_the_transcript_is_append_only(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    assert "append-only" in _refused(raw, "UPDATE transcript SET text = 'edited'")
    assert "append-only" in _refused(raw, "DELETE FROM transcript")


async def test_a_delivered_reply_is_final_and_its_text_cannot_change(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await SqliteStore.open(tmp_path / "o.db", clock)
    accepted = await store.accept_inbound(
        "s1", NewInbound("chatapp", "hi", reply_to="chat-1"), FOLLOWUP)
    await finish(store, (await claim(store, accepted.session.id)).run, "hello")
    [item] = await store.take_deliveries("chatapp", timedelta(seconds=60))
    await store.mark_delivered(item.id)
    raw = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    assert "cannot change" in _refused(raw, "UPDATE outbox SET status = 'pending'")
    await store.close()


async def test_every_transition_leaves_an_event_row(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    kinds = [row[0] for row in raw.execute(
        "SELECT kind FROM events WHERE run_id IN (SELECT id FROM runs WHERE status = 'done')"
        " ORDER BY seq"
    )]
    assert kinds == ["run.queued", "message.answered", "run.running", "run.done"]


async def test_the_transition_table_in_sql_is_the_domain_table(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    _, raw = db
    stored = set(raw.execute("SELECT from_status, to_status FROM run_transitions"))
    assert stored == {(a.value, b.value) for a, bs in TRANSITIONS.items() for b in bs}
    assert {RunStatus(a) for a, _ in stored} == {RunStatus.QUEUED, RunStatus.RUNNING}


async def test_the_audit_notices_a_tampered_transition_table(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    store, raw = db
    raw.execute("INSERT INTO run_transitions VALUES ('done', 'running')")
    assert [f.code for f in await store.audit()] == ["transition_table"]


async def test_migrations_apply_once_and_reopening_changes_nothing(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "m.db"
    first = await SqliteStore.open(path, clock)
    await say(first, "kept")
    await first.close()
    second = await SqliteStore.open(path, clock)
    raw = sqlite3.connect(path)
    versions = [row[0] for row in raw.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in migrations()]
    summary = await second.summarize_session("s1")
    assert summary is not None
    assert summary.pending == 1
    await second.close()


async def test_an_older_database_is_upgraded_with_its_messages_and_their_fates(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "v4.db"
    raw = database_at(path, 4)
    at = "2026-11-01T00:00:00.000000+00:00"
    raw.execute("INSERT INTO sessions (id, key, created_at, updated_at) VALUES"
                " ('ses_old', 'tg:1', ?, ?)", (at, at))
    raw.execute("INSERT INTO inbound (id, session_id, channel, channel_message_id, text,"
                " received_at) VALUES ('msg_old', 'ses_old', 'test', 'm-1', 'hello', ?)", (at,))
    raw.execute("UPDATE inbound SET fate = 'dropped', reason = 'reset', decided_at = ?", (at,))
    raw.close()

    store = await SqliteStore.open(path, clock)
    again = await say(store, "hello", key="tg:1", cmid="m-1")
    elsewhere = await say(store, "hello", key="tg:2", cmid="m-1")

    assert again.duplicate
    assert (again.message.id, again.message.reason) == ("msg_old", DropReason.RESET)
    assert not elsewhere.duplicate
    assert await store.audit() == []
    await store.close()


async def test_a_rest_recorded_before_rests_were_per_model_still_rests_the_whole_key(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "v5.db"
    raw = database_at(path, 5)
    until = clock.now() + timedelta(minutes=5)
    raw.execute("INSERT INTO cooldowns VALUES ('openai:work', ?, 2, 'auth: bad key', ?)",
                (until.isoformat(), clock.now().isoformat()))
    raw.close()

    store = await SqliteStore.open(path, clock)
    assert await store.cooldowns() == [Cooldown("openai:work", until, 2, "auth: bad key", None)]
    again = await store.record_cooldown("openai:work", "auth: bad key", (60.0,), None)
    assert again.failures == 3  # the same rest, counted on
    await store.close()


async def test_a_database_from_a_newer_clawgate_is_refused_with_a_clear_error(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "new.db"
    await (await SqliteStore.open(path, clock)).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01')")
    with pytest.raises(SchemaTooNew, match="upgrade clawgate"):
        await SqliteStore.open(path, clock)


async def test_a_file_that_is_not_a_database_is_refused_by_name_and_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "clawgate.db"
    path.write_bytes(b"garbage\n")
    with pytest.raises(StoreCorrupt, match=f"{path} is not a usable clawgate database"):
        await SqliteStore.open(path)
    assert path.read_bytes() == b"garbage\n"
    assert not path.with_name("clawgate.db-wal").exists()


async def test_opening_a_new_file_waits_while_another_process_is_setting_it_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.db"
    other_process = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other_process.execute("BEGIN IMMEDIATE")  # a new file, still in rollback-journal mode
    asyncio.get_running_loop().call_later(0.3, other_process.execute, "COMMIT")
    try:
        store = await SqliteStore.open(path)  # SQLite says "locked" at once: we must wait
    finally:
        other_process.close()
    await store.ensure_session("s1")
    await store.close()


def test_statement_splitting_keeps_triggers_whole() -> None:
    sql = (
        "-- a comment\nCREATE TABLE t (a);\n"
        "CREATE TRIGGER x BEFORE DELETE ON t BEGIN\n  SELECT RAISE(ABORT, 'no');\nEND;\n"
    )
    assert len(statements(sql)) == 2
    with pytest.raises(ValueError, match="incomplete"):
        statements("CREATE TABLE t (a")


async def test_the_audit_notices_a_dropped_guard(
    db: tuple[SqliteStore, sqlite3.Connection],
) -> None:
    store, raw = db
    raw.execute("DROP TRIGGER transcript_append_only_update")
    raw.execute("DROP INDEX runs_one_active")
    findings = await store.audit()
    assert [(f.code, "transcript_append_only_update" in f.message or "runs_one_active"
             in f.message) for f in findings] == [("missing_guard", True)] * 2


def test_a_database_another_connection_holds_is_reported_busy_not_broken(
    tmp_path: Path,
) -> None:
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            other.execute("INSERT INTO t VALUES (1)")
        error = translate(caught.value, path)
    finally:
        other.close()
        holder.close()
    assert isinstance(error, StoreBusy)
    assert "stayed locked" in str(error)
