"""Schema 8's guards: hand-written SQL cannot delete what is kept or cross sessions.

Each write below is one no clawgate command makes. It is tried on a real database file through
a connection set up as clawgate sets up its own (foreign keys on), and refused by name; with
the guards dropped, doctor finds the damage it did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clawgate.domain import (
    Attempt,
    DropPolicy,
    NewInbound,
    QueuePatch,
    RunOutcome,
    RunStatus,
    Usage,
)
from clawgate.errors import StoreError
from clawgate.store.sqlite import SqliteStore
from clawgate.store.sqlite_queries import GUARDS, KEEPING_GUARDS
from clawgate.store.sqlite_worker import connect, translate
from clawgate.testing import ManualClock
from tests.conformance.helpers import ECHO, FOLLOWUP, LEASE, OWNER, claim, finish, running, say
from tests.old_databases import database_at

AT = "2030-01-01T00:00:00.000000+00:00"


@dataclass(frozen=True)
class Ids:
    s1: str  # a finished run (with its attempts and tokens) and a message waiting
    s2: str  # a finished run whose reply waits in the outbox
    s3: str  # a run in progress, told of a message dropped under "summarize"
    archived: str
    r1: str
    r2: str
    r3: str
    waiting: str


async def _world(store: SqliteStore) -> Ids:
    first = await running(store, "hi", key="s1")
    await store.finish_run(first.id, OWNER, RunOutcome(
        RunStatus.DONE, "hello", Usage(12, 3, 1), attempts=(Attempt(ECHO, "default", "answered"),)))
    waiting = await say(store, "still waiting", key="s1")
    pushed = await store.accept_inbound("s2", NewInbound("chatapp", "yo", reply_to="chat-2"),
                                        FOLLOWUP)
    second = await finish(store, (await claim(store, pushed.session.id)).run, "hey")
    assert second is not None
    await store.set_queue("s3", QueuePatch(cap=1, drop=DropPolicy.SUMMARIZE))
    await say(store, "lost", key="s3")
    third = await say(store, "kept", key="s3")  # drops "lost", summarised to the next run
    taken = await claim(store, third.session.id)
    await say(store, "old times", key="gone")
    reset = await store.reset_session("gone")
    return Ids(first.session_id, second.session_id, third.session.id, reset.old.id, first.id,
               second.id, taken.run.id, waiting.message.id)


@pytest.fixture
async def world(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[SqliteStore, sqlite3.Connection, Ids]]:
    store = await SqliteStore.open(tmp_path / "c.db", clock)
    ids = await _world(store)
    raw = connect(tmp_path / "c.db")  # as clawgate connects: foreign keys on
    yield store, raw, ids
    raw.close()
    await store.close()


REFUSED: list[tuple[str, str, str]] = [
    ("delete a pending reply", "DELETE FROM outbox WHERE status = 'pending'",
     "a reply waiting for delivery cannot be deleted"),
    ("answer a message by another session's run",
     "UPDATE inbound SET fate = 'answered', run_id = :r2, decided_at = :at WHERE id = :waiting",
     "a message is answered or merged by a run of its own session"),
    ("accept a message already answered by another session's run",
     "INSERT INTO inbound (id, session_id, session_key, channel, text, received_at, fate,"
     " run_id, decided_at) VALUES ('msg_x', :s1, 's1', 'test', 'x', :at, 'answered', :r2, :at)",
     "a message is answered or merged by a run of its own session"),
    ("a transcript entry of another session's run",
     "INSERT INTO transcript (session_id, run_id, role, text, created_at)"
     " VALUES (:s1, :r2, 'assistant', 'dup', :at)",
     "a transcript entry belongs to the session of its run"),
    ("a reply for another session's run",
     "INSERT INTO outbox (id, session_id, run_id, channel, target, text, next_attempt_at,"
     " created_at) VALUES ('out_x', :s1, :r3, 'chatapp', 'chat-1', 'x', :at, :at)",
     "a reply is delivered for a run of its own session"),
    ("delete the event feed", "DELETE FROM events", "the event feed is append-only"),
    ("rewrite an event", "UPDATE events SET kind = 'run.running' WHERE kind = 'run.done'",
     "the event feed is append-only"),
    ("session tokens go down", "UPDATE sessions SET input_tokens = 0, output_tokens = 0",
     "token counts only go up"),
    ("run tokens go down", "UPDATE runs SET cached_tokens = 0 WHERE id = :r1",
     "token counts only go up"),
    ("delete a run's attempts", "DELETE FROM run_attempts", "what a run tried is kept"),
    ("rewrite a run's attempt", "UPDATE run_attempts SET outcome = 'auth'",
     "what a run tried is kept"),
    ("delete who was told of a dropped message", "DELETE FROM queue_summaries",
     "which run was told of a dropped message is kept"),
    ("un-archive a session", "UPDATE sessions SET archived_at = NULL WHERE id = :archived",
     "an archived session stays archived"),
    ("rename a session", "UPDATE sessions SET key = 's9' WHERE id = :s1",
     "a session keeps its id and key"),
    ("move an active run to another session", "UPDATE runs SET session_id = :s1 WHERE id = :r3",
     "a run belongs to the session it was started in"),
    ("delete a finished run", "DELETE FROM runs WHERE id = :r1", "a run cannot be deleted"),
    ("delete a session", "DELETE FROM sessions WHERE id = :archived",
     "a session cannot be deleted"),
]


@pytest.mark.parametrize(("sql", "promise"), [(sql, promise) for _, sql, promise in REFUSED],
                         ids=[name for name, _, _ in REFUSED])
async def test_a_write_no_command_makes_is_refused_naming_the_promise(
    world: tuple[SqliteStore, sqlite3.Connection, Ids], sql: str, promise: str
) -> None:
    store, raw, ids = world
    before = list(raw.iterdump())
    with pytest.raises(sqlite3.IntegrityError) as caught:
        raw.execute(sql, {**vars(ids), "at": AT})
    error = translate(caught.value, store.path)  # what the store raises for it
    assert isinstance(error, StoreError)
    assert promise in str(error)
    assert list(raw.iterdump()) == before


async def test_with_the_foreign_keys_off_a_run_or_session_still_cannot_be_deleted(
    world: tuple[SqliteStore, sqlite3.Connection, Ids],
) -> None:
    _, raw, _ = world
    raw.execute("PRAGMA foreign_keys = OFF")  # the sqlite3 shell's default
    for sql, promise in [("DELETE FROM runs", "a run cannot be deleted"),
                         ("DELETE FROM sessions", "a session cannot be deleted")]:
        with pytest.raises(sqlite3.IntegrityError, match=promise):
            raw.execute(sql)


async def test_the_commands_still_do_all_they_did_and_leave_the_database_healthy(
    world: tuple[SqliteStore, sqlite3.Connection, Ids],
) -> None:
    store, _, ids = world
    [item] = await store.take_deliveries("chatapp", LEASE)
    assert await store.mark_delivered(item.id)
    assert await store.append_summary(ids.s1, "earlier: hi", 1, Usage(5, 2))
    stopped = await store.request_stop(ids.s3)
    assert stopped.run is not None
    assert stopped.run.status is RunStatus.KILLED
    await store.archive_session("s2")
    await finish(store, await running(store, "new", key="s2"), "fresh")
    assert await store.audit() == []


async def test_doctor_finds_what_crossed_sessions_while_the_guards_were_off(
    world: tuple[SqliteStore, sqlite3.Connection, Ids],
) -> None:
    store, raw, ids = world
    for name in ("inbound_run_of_its_session", "transcript_of_its_session",
                 "outbox_of_its_session"):
        raw.execute(f"DROP TRIGGER {name}")
    params = {**vars(ids), "at": AT}
    raw.execute("UPDATE inbound SET fate = 'answered', run_id = :r2, decided_at = :at"
                " WHERE id = :waiting", params)
    raw.execute("INSERT INTO transcript (session_id, run_id, role, text, created_at)"
                " VALUES (:s1, :r2, 'assistant', 'dup', :at)", params)
    raw.execute("INSERT INTO outbox (id, session_id, run_id, channel, target, text,"
                " next_attempt_at, created_at) VALUES ('out_x', :s1, :r3, 'chatapp', 'chat-1',"
                " 'x', :at, :at)", params)

    findings = {(f.code, f.subject) for f in await store.audit()}

    assert findings == {
        ("missing_guard", None),
        ("cross_session_fate", ids.waiting),
        ("cross_session_transcript", ids.r2),
        ("cross_session_reply", "out_x"),
    }
    [fate] = [f.message for f in await store.audit() if f.code == "cross_session_fate"]
    assert fate == f"message {ids.waiting} is answered by run {ids.r2}, a run of another session"


async def test_doctor_names_each_dropped_guard_of_schema_8(
    world: tuple[SqliteStore, sqlite3.Connection, Ids],
) -> None:
    store, raw, _ = world
    raw.execute("DROP TRIGGER outbox_pending_kept")
    raw.execute("DROP TRIGGER events_append_only_delete")
    findings = await store.audit()
    assert [(f.code, f.message.split("'")[1]) for f in findings] == [
        ("missing_guard", "events_append_only_delete"), ("missing_guard", "outbox_pending_kept")]


async def test_every_trigger_and_unique_index_is_a_guard_doctor_checks(
    world: tuple[SqliteStore, sqlite3.Connection, Ids],
) -> None:
    _, raw, _ = world
    triggers = {row[0] for row in raw.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    tables = [row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    unique = {row[1] for table in tables for row in raw.execute(f"PRAGMA index_list({table})")
              if row[2] and row[3] == "c"}  # made by CREATE UNIQUE INDEX
    assert triggers | unique == GUARDS | KEEPING_GUARDS


async def test_a_schema_7_database_is_upgraded_with_the_guards_and_keeps_its_rows(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "v7.db"
    raw = database_at(path, 7)
    raw.execute("INSERT INTO sessions (id, key, created_at, updated_at, input_tokens)"
                " VALUES ('ses_old', 'old', ?, ?, 40)", (AT, AT))
    raw.close()

    store = await SqliteStore.open(path, clock)
    await finish(store, await running(store, "after", key="old"), "ok")
    upgraded = connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="token counts only go up"):
            upgraded.execute("UPDATE sessions SET input_tokens = 0")
        with pytest.raises(sqlite3.IntegrityError, match="a run cannot be deleted"):
            upgraded.execute("DELETE FROM runs")
    finally:
        upgraded.close()
    summary = await store.summarize_session("old")
    assert summary is not None
    assert summary.session.id == "ses_old"
    assert await store.audit() == []
    await store.close()
