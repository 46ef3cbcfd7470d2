"""The read-only queries of the SQLite store, and its audit of every promise."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from clawgate.clock import Clock
from clawgate.domain import (
    REPLY_SEPARATOR,
    TRANSITIONS,
    Attempt,
    ContextEntry,
    Cooldown,
    InboundMessage,
    ModelRef,
    Outbound,
    OwnerInfo,
    QueuePatch,
    Role,
    Run,
    RunStatus,
    StoredEvent,
    TranscriptEntry,
)
from clawgate.store import findings as found
from clawgate.store.protocol import Counts, Finding, SessionSummary
from clawgate.store.sqlite_commands import ACTIVE
from clawgate.store.sqlite_rows import (
    INBOUND_COLUMNS,
    OUTBOX_COLUMNS,
    OWNER_COLUMNS,
    QUEUE_COLUMNS,
    RUN_COLUMNS,
    SESSION_COLUMNS,
    TRANSCRIPT_COLUMNS,
    Row,
    dt,
    inbound_from,
    outbound_from,
    owner_from,
    queue_from,
    run_from,
    session_from,
    transcript_from,
    ts,
)


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in columns.split(","))


_SESSION_WIDTH = SESSION_COLUMNS.count(",") + 1
_RUN_WIDTH = RUN_COLUMNS.count(",") + 1
# A session with its latest run and how many of its messages wait, in one statement: each
# lookup searches an index (runs_by_session, inbound_waiting), so listing thousands of sessions
# is one short read, not two more queries per session holding the reader.
_SUMMARIES = (
    f"SELECT {_prefixed('s', SESSION_COLUMNS)}, {_prefixed('r', RUN_COLUMNS)},"
    " (SELECT count(*) FROM inbound AS i WHERE i.session_id = s.id AND i.fate = 'pending')"
    " FROM sessions AS s LEFT JOIN runs AS r ON r.rowid = (SELECT rowid FROM runs"
    " WHERE session_id = s.id ORDER BY created_at DESC, id DESC LIMIT 1)"
    " WHERE s.archived_at IS NULL "
)
_SUMMARY_OF_KEY = _SUMMARIES + "AND s.key = ?"
_SUMMARIES_RECENT = _SUMMARIES + "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?"


def _summary_from(row: Row) -> SessionSummary:
    run = row[_SESSION_WIDTH:_SESSION_WIDTH + _RUN_WIDTH]
    return SessionSummary(session_from(row[:_SESSION_WIDTH]),
                          None if run[0] is None else run_from(run), int(row[-1]))


def summarize_session(conn: sqlite3.Connection, key: str) -> SessionSummary | None:
    row = conn.execute(_SUMMARY_OF_KEY, (key,)).fetchone()
    return None if row is None else _summary_from(row)


def list_sessions(conn: sqlite3.Connection, limit: int) -> list[SessionSummary]:
    return [_summary_from(row) for row in conn.execute(_SUMMARIES_RECENT, (limit,))]


def queue_settings(
    conn: sqlite3.Connection, session_ids: frozenset[str]
) -> dict[str, QueuePatch]:
    rows = conn.execute(
        f"SELECT id, {QUEUE_COLUMNS} FROM sessions"
        " WHERE id IN (SELECT value FROM json_each(?)) AND archived_at IS NULL",
        (_json_ids(session_ids),),
    )
    return {row[0]: queue_from(row[1:]) for row in rows}


def _json_ids(ids: frozenset[str]) -> str:
    """Ids as one bound parameter, a JSON array (``json_each``): no limit on how many."""
    return json.dumps(sorted(ids))


def list_runs(conn: sqlite3.Connection, session_id: str, limit: int) -> list[Run]:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ?"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        (session_id, limit),
    ).fetchall()
    return [run_from(row) for row in reversed(rows)]


def list_inbound(conn: sqlite3.Connection, session_id: str, limit: int) -> list[InboundMessage]:
    rows = conn.execute(
        f"SELECT {INBOUND_COLUMNS} FROM inbound WHERE session_id = ?"
        " ORDER BY received_at DESC, id DESC LIMIT ?",
        (session_id, limit),
    ).fetchall()
    return [inbound_from(row) for row in reversed(rows)]


def run_messages(conn: sqlite3.Connection, run_id: str) -> list[InboundMessage]:
    rows = conn.execute(
        f"SELECT {INBOUND_COLUMNS} FROM inbound WHERE run_id = ? ORDER BY received_at, id",
        (run_id,),
    ).fetchall()
    return [inbound_from(row) for row in rows]


def active_runs(conn: sqlite3.Connection) -> list[Run]:
    rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN {ACTIVE}").fetchall()
    return [run_from(row) for row in rows]


def list_outbox(conn: sqlite3.Connection, session_id: str, limit: int) -> list[Outbound]:
    rows = conn.execute(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
        (session_id, limit),
    ).fetchall()
    return [outbound_from(row) for row in reversed(rows)]


def events_after(
    conn: sqlite3.Connection, seq: int, keys: frozenset[str] | None, limit: int
) -> list[StoredEvent]:
    columns = "seq, at, session_id, session_key, kind, run_id, message_id, detail"
    if keys is None:
        rows = conn.execute(f"SELECT {columns} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                            (seq, limit)).fetchall()
    elif not keys:
        return []
    else:
        marks = ", ".join("?" for _ in keys)
        rows = conn.execute(
            f"SELECT {columns} FROM events WHERE seq > ? AND session_key IN ({marks})"
            " ORDER BY seq LIMIT ?", (seq, *sorted(keys), limit)).fetchall()
    return [StoredEvent(n, dt(at), sid, key or "", kind, run_id, message_id, _detail(detail))
            for n, at, sid, key, kind, run_id, message_id, detail in rows]


def _detail(raw: str | None) -> dict[str, object]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"note": raw}  # written before schema 4
    return value if isinstance(value, dict) else {"note": raw}


def last_event_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(seq) FROM events").fetchone()
    return int(row[0] or 0)


def any_due(conn: sqlite3.Connection, clock: Clock, channel: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM outbox WHERE channel = ? AND status = 'pending'"
        " AND next_attempt_at <= ? LIMIT 1",
        (channel, ts(clock.now())),
    ).fetchone()
    return row is not None


def any_expired(conn: sqlite3.Connection, clock: Clock) -> bool:
    row = conn.execute(
        f"SELECT 1 FROM runs WHERE status IN {ACTIVE} AND lease_expires_at < ? LIMIT 1",
        (ts(clock.now()),),
    ).fetchone()
    return row is not None


def stop_requests(conn: sqlite3.Connection, owner_id: str) -> dict[str, RunStatus]:
    rows = conn.execute(
        f"SELECT id, stop_requested FROM runs WHERE owner_id = ? AND status IN {ACTIVE}"
        " AND stop_requested IS NOT NULL",
        (owner_id,),
    ).fetchall()
    return {row[0]: RunStatus(row[1]) for row in rows}


def owners_with_active_runs(conn: sqlite3.Connection) -> list[OwnerInfo]:
    rows = conn.execute(
        f"SELECT {OWNER_COLUMNS} FROM owners WHERE id IN ("
        f" SELECT owner_id FROM runs WHERE status IN {ACTIVE})"
    ).fetchall()
    return [owner_from(row) for row in rows]


def claimable_sessions(
    conn: sqlite3.Connection, session_ids: frozenset[str] | None, limit: int,
    excluding: frozenset[str],
) -> list[str]:
    among = ""
    params: list[object] = []
    if session_ids is not None:
        if not session_ids:
            return []
        among = f" AND i.session_id IN ({', '.join('?' for _ in session_ids)})"
        params.extend(sorted(session_ids))
    if excluding:  # any number of them: one JSON array
        among += " AND i.session_id NOT IN (SELECT value FROM json_each(?))"
        params.append(_json_ids(excluding))
    rows = conn.execute(
        "SELECT DISTINCT i.session_id FROM inbound i WHERE i.fate = 'pending'" + among
        + f" AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.session_id = i.session_id"
        f" AND r.status IN {ACTIVE}) LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [row[0] for row in rows]


def transcript(
    conn: sqlite3.Connection, session_id: str, limit: int | None
) -> list[TranscriptEntry]:
    if limit is None:
        rows = conn.execute(
            f"SELECT {TRANSCRIPT_COLUMNS} FROM transcript WHERE session_id = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
        return [transcript_from(row) for row in rows]
    rows = conn.execute(
        f"SELECT {TRANSCRIPT_COLUMNS} FROM transcript WHERE session_id = ?"
        " ORDER BY seq DESC LIMIT ?",
        (session_id, limit),
    ).fetchall()
    return [transcript_from(row) for row in reversed(rows)]


def conversation(conn: sqlite3.Connection, session_id: str, limit: int) -> list[ContextEntry]:
    # The summary that covers most (a /compact that raced a run may have written one that
    # covers less, later); the newest of those.
    summary = conn.execute(
        "SELECT seq, text, covers_through FROM transcript WHERE session_id = ?"
        " AND covers_through IS NOT NULL ORDER BY covers_through DESC, seq DESC LIMIT 1",
        (session_id,),
    ).fetchone()
    after = -1 if summary is None else summary[2]
    rows = conn.execute(
        "SELECT seq, role, text FROM transcript WHERE session_id = ? AND seq > ?"
        " AND covers_through IS NULL ORDER BY seq DESC LIMIT ?",
        (session_id, after, limit),
    ).fetchall()
    entries = [ContextEntry(seq, Role(role), text) for seq, role, text in reversed(rows)]
    if summary is None:
        return entries
    return [ContextEntry(summary[0], Role.NOTE, summary[1], summary=True), *entries]


def list_attempts(conn: sqlite3.Connection, run_id: str) -> list[Attempt]:
    rows = conn.execute(
        "SELECT provider, model, profile, outcome, error FROM run_attempts WHERE run_id = ?"
        " ORDER BY seq",
        (run_id,),
    ).fetchall()
    return [Attempt(ModelRef(p, m), profile, outcome, error)
            for p, m, profile, outcome, error in rows]


def cooldowns(conn: sqlite3.Connection) -> list[Cooldown]:
    rows = conn.execute(
        "SELECT profile_key, until, failures, reason, model, key_fingerprint FROM cooldowns"
    ).fetchall()
    return [Cooldown(key, dt(until), failures, reason, model or None, fingerprint)
            for key, until, failures, reason, model, fingerprint in rows]


def run_reply(conn: sqlite3.Connection, run_id: str, after_message: str | None) -> str:
    rows = conn.execute(
        "SELECT text FROM transcript WHERE run_id = ? AND role = 'assistant' AND seq > coalesce("
        " (SELECT seq FROM transcript WHERE run_id = ? AND message_id = ?), -1) ORDER BY seq",
        (run_id, run_id, after_message),
    ).fetchall()
    return REPLY_SEPARATOR.join(row[0] for row in rows)


def counts(conn: sqlite3.Connection) -> Counts:
    sessions = conn.execute("SELECT count(*) FROM sessions WHERE archived_at IS NULL")
    active = conn.execute(f"SELECT count(*) FROM runs WHERE status IN {ACTIVE}")
    waiting = conn.execute("SELECT count(*) FROM inbound WHERE fate = 'pending'")
    return Counts(sessions.fetchone()[0], active.fetchone()[0], waiting.fetchone()[0])


# --- audit ---------------------------------------------------------------------------


def audit(conn: sqlite3.Connection, clock: Clock) -> list[Finding]:
    now = clock.now()
    findings = _integrity(conn)
    findings += _contradictions(conn)
    findings += _transition_table(conn)
    findings += _guards(conn)
    findings += _orphans(conn, now)
    findings += _past_deadline(conn, now)
    findings += _waiting(conn)
    findings += _crossed_sessions(conn)
    return findings


def _integrity(conn: sqlite3.Connection) -> list[Finding]:
    findings = []
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        findings.append(Finding("integrity", f"database integrity check failed: {result}"))
    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        findings.append(found.dangling_references(len(broken), (row[0] for row in broken)))
    return findings


def _contradictions(conn: sqlite3.Connection) -> list[Finding]:
    findings = []
    for (run_id, status) in conn.execute(
        f"SELECT id, status FROM runs WHERE (status IN {ACTIVE} AND ended_at IS NOT NULL)"
        f" OR (status NOT IN {ACTIVE} AND (ended_at IS NULL OR runtime_ms IS NULL))"
    ):
        findings.append(found.contradictory_run(run_id, status))
    for (session_id, count) in conn.execute(
        f"SELECT session_id, count(*) FROM runs WHERE status IN {ACTIVE}"
        " GROUP BY session_id HAVING count(*) > 1"
    ):
        findings.append(found.several_active_runs(session_id, count))
    for (message_id, fate) in conn.execute(
        "SELECT id, fate FROM inbound WHERE (fate IN ('answered', 'merged') AND run_id IS NULL)"
        " OR (fate = 'dropped' AND reason IS NULL)"
    ):
        findings.append(found.unexplained_fate(message_id, fate))
    return findings


def _transition_table(conn: sqlite3.Connection) -> list[Finding]:
    stored = set(conn.execute("SELECT from_status, to_status FROM run_transitions"))
    expected = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    if stored != expected:
        return [Finding("transition_table", "the database's run transition table was altered")]
    return []


#: The triggers and indexes that enforce the promises; doctor checks none was dropped.
GUARDS = frozenset({
    "runs_status_forward_only", "runs_finished_are_final", "runs_start_active",
    "inbound_fate_once", "inbound_said_is_kept", "inbound_no_delete", "inbound_names_its_key",
    "transcript_append_only_update", "transcript_append_only_delete",
    "events_run_created", "events_run_transition", "events_message_accepted",
    "events_message_fate", "events_session_created", "events_session_archived",
    "events_session_model", "events_session_queue", "outbox_final", "outbox_text_kept",
    "runs_one_active", "sessions_current_key", "inbound_dedup", "outbox_one_per_run",
})


#: Schema 8's: what is kept is never deleted, and nothing names a run of another session.
KEEPING_GUARDS = frozenset({
    "sessions_no_delete", "sessions_stay_archived", "sessions_keep_their_key",
    "sessions_tokens_only_grow", "runs_no_delete", "runs_stay_in_their_session",
    "runs_tokens_only_grow", "inbound_run_of_its_session", "inbound_accepted_run_of_its_session",
    "transcript_of_its_session", "outbox_of_its_session", "outbox_pending_kept",
    "run_attempts_kept_update", "run_attempts_kept_delete", "queue_summaries_kept_update",
    "queue_summaries_kept_delete", "events_append_only_update", "events_append_only_delete",
})


def _guards(conn: sqlite3.Connection) -> list[Finding]:
    present = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'index')")}
    return [Finding("missing_guard", f"the database lost its guard {name!r}; restore it "
                                     "from a backup or recreate the database")
            for name in sorted((GUARDS | KEEPING_GUARDS) - present)]


def _past_deadline(conn: sqlite3.Connection, now: datetime) -> list[Finding]:
    rows = conn.execute(
        "SELECT id, deadline_at FROM runs WHERE status = 'running' AND deadline_at < ?"
        " AND lease_expires_at >= ?",
        (ts(now - found.DEADLINE_GRACE), ts(now)),
    ).fetchall()
    return [found.past_deadline(run_id, dt(deadline)) for (run_id, deadline) in rows]


def _orphans(conn: sqlite3.Connection, now: datetime) -> list[Finding]:
    rows = conn.execute(
        f"SELECT r.id, s.key, r.owner_id, r.lease_expires_at FROM runs r"
        f" JOIN sessions s ON s.id = r.session_id"
        f" WHERE r.status IN {ACTIVE} AND r.lease_expires_at < ?",
        (ts(now),),
    ).fetchall()
    return [found.orphaned_run(run_id, key, owner, dt(lease))
            for (run_id, key, owner, lease) in rows]


def _waiting(conn: sqlite3.Connection) -> list[Finding]:
    """Messages, and summaries of dropped messages, left waiting in archived sessions."""
    rows = conn.execute(
        "SELECT id FROM inbound WHERE fate = 'pending' AND session_id IN ("
        " SELECT id FROM sessions WHERE archived_at IS NOT NULL)"
    ).fetchall()
    summaries = conn.execute(
        "SELECT id FROM inbound INDEXED BY inbound_summarized"
        " WHERE reason = 'queue_full_summarized'"
        " AND NOT EXISTS (SELECT 1 FROM queue_summaries q WHERE q.message_id = inbound.id)"
        " AND session_id IN (SELECT id FROM sessions WHERE archived_at IS NOT NULL)"
        " ORDER BY received_at, id"
    ).fetchall()
    return [*(found.waiting_in_archived(row[0]) for row in rows),
            *(found.summary_undeliverable(row[0]) for row in summaries)]


def _crossed_sessions(conn: sqlite3.Connection) -> list[Finding]:
    """Messages, transcript entries and replies that name a run of another session."""
    fates = conn.execute(
        "SELECT i.id, i.fate, r.id FROM inbound i JOIN runs r ON r.id = i.run_id"
        " WHERE r.session_id <> i.session_id ORDER BY i.received_at, i.id"
    ).fetchall()
    entries = conn.execute(
        "SELECT t.seq, t.session_id, r.id FROM transcript t JOIN runs r ON r.id = t.run_id"
        " WHERE r.session_id <> t.session_id ORDER BY t.seq"
    ).fetchall()
    replies = conn.execute(
        "SELECT o.id, r.id FROM outbox o JOIN runs r ON r.id = o.run_id"
        " WHERE r.session_id <> o.session_id ORDER BY o.seq"
    ).fetchall()
    return [
        *(Finding("cross_session_fate", f"message {message_id} is {fate} by run {run_id}, "
                                        "a run of another session", subject=message_id)
          for message_id, fate, run_id in fates),
        *(Finding("cross_session_transcript", f"transcript entry {seq} of session {session_id}"
                                              f" belongs to run {run_id}, a run of another "
                                              "session", subject=run_id)
          for seq, session_id, run_id in entries),
        *(Finding("cross_session_reply", f"reply {outbound_id} belongs to run {run_id}, a run "
                                         "of another session", subject=outbound_id)
          for outbound_id, run_id in replies),
    ]
