"""The write transactions of the SQLite store. Each function runs inside ``BEGIN IMMEDIATE``.

Every status change is a guarded UPDATE (``... AND status IN (<allowed from>)``) whose row
count says whether it applied; the schema's triggers refuse anything the domain forbids.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from clawgate.clock import Clock
from clawgate.domain import (
    ENDED_LEASE_EXPIRED,
    REPLY_SEPARATOR,
    Cooldown,
    Delivery,
    DropReason,
    Fate,
    InboundMessage,
    ModelRef,
    NewInbound,
    Outbound,
    OwnerInfo,
    QueueMode,
    QueuePatch,
    QueueSettings,
    Role,
    Run,
    RunOutcome,
    RunStatus,
    Session,
    Usage,
    allowed_from,
    can_transition,
    cooldown_window,
    debounce_until,
    delivery_text,
    plan_claim,
    plan_overflow,
    plan_stop,
    runtime_ms,
    same_key,
    summary_note,
)
from clawgate.errors import UnknownSession
from clawgate.ids import new_id
from clawgate.store.protocol import (
    Acceptance,
    Claim,
    Deferred,
    ResetResult,
    StopOutcome,
    StopResult,
)
from clawgate.store.sqlite_rows import (
    INBOUND_COLUMNS,
    OUTBOX_COLUMNS,
    RUN_COLUMNS,
    SESSION_COLUMNS,
    inbound_from,
    opt_dt,
    outbound_from,
    run_from,
    session_from,
    ts,
)

ACTIVE = "('queued', 'running')"
STALE_OWNER_AGE = timedelta(days=1)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


# --- reads used inside write transactions ----------------------------------------------


def current_session(conn: sqlite3.Connection, key: str) -> Session | None:
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE key = ? AND archived_at IS NULL", (key,)
    ).fetchone()
    return None if row is None else session_from(row)


def session_by_id(conn: sqlite3.Connection, session_id: str) -> Session | None:
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    return None if row is None else session_from(row)


def active_run(conn: sqlite3.Connection, session_id: str) -> Run | None:
    row = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ? AND status IN {ACTIVE}",
        (session_id,),
    ).fetchone()
    return None if row is None else run_from(row)


def run_by_id(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else run_from(row)


def message_by_id(conn: sqlite3.Connection, message_id: str) -> InboundMessage | None:
    row = conn.execute(
        f"SELECT {INBOUND_COLUMNS} FROM inbound WHERE id = ?", (message_id,)
    ).fetchone()
    return None if row is None else inbound_from(row)


def waiting(conn: sqlite3.Connection, session_id: str) -> list[InboundMessage]:
    rows = conn.execute(
        f"SELECT {INBOUND_COLUMNS} FROM inbound WHERE session_id = ? AND fate = 'pending'"
        " ORDER BY received_at, id",
        (session_id,),
    )
    return [inbound_from(row) for row in rows]


# --- small shared steps --------------------------------------------------------------


def _touch(conn: sqlite3.Connection, session_id: str, now: datetime) -> None:
    conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (ts(now), session_id))


def _decide(
    conn: sqlite3.Connection,
    message_ids: Iterable[str],
    fate: Fate,
    now: datetime,
    run_id: str | None = None,
    reason: DropReason | None = None,
) -> list[InboundMessage]:
    decided = []
    for message_id in message_ids:
        cursor = conn.execute(
            "UPDATE inbound SET fate = ?, run_id = ?, reason = ?, decided_at = ?"
            " WHERE id = ? AND fate = 'pending'",
            (fate.value, run_id, reason and reason.value, ts(now), message_id),
        )
        if cursor.rowcount:
            message = message_by_id(conn, message_id)
            assert message is not None
            decided.append(message)
    return decided


def _append(
    conn: sqlite3.Connection,
    session_id: str,
    role: Role,
    text: str,
    now: datetime,
    run_id: str | None = None,
    message_id: str | None = None,
    stopped: bool = False,
) -> None:
    conn.execute(
        "INSERT INTO transcript (session_id, run_id, message_id, role, text, stopped, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session_id, run_id, message_id, role.value, text, int(stopped), ts(now)),
    )


def _end(
    conn: sqlite3.Connection, run: Run, status: RunStatus, now: datetime, error: str | None
) -> Run | None:
    """Move an active run to a terminal status (guarded); None when it was not active."""
    sources = tuple(s.value for s in allowed_from(status))
    cursor = conn.execute(
        f"UPDATE runs SET status = ?, ended_at = ?, runtime_ms = ?, error = ?"
        f" WHERE id = ? AND status IN ({_marks(sources)})",
        (status.value, ts(now), runtime_ms(run, now), error, run.id, *sources),
    )
    if not cursor.rowcount:
        return None
    _touch(conn, run.session_id, now)
    return run_by_id(conn, run.id)


# --- owners and leases ---------------------------------------------------------------


def register_owner(conn: sqlite3.Connection, clock: Clock, owner: OwnerInfo) -> None:
    now = clock.now()
    conn.execute(
        "INSERT OR REPLACE INTO owners (id, host, pid, boot_id, process_start, started_at,"
        " heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (owner.id, owner.host, owner.pid, owner.boot_id, owner.process_start,
         ts(owner.started_at), ts(now)),
    )
    conn.execute(
        f"DELETE FROM owners WHERE heartbeat_at < ? AND NOT EXISTS ("
        f" SELECT 1 FROM runs WHERE runs.owner_id = owners.id AND runs.status IN {ACTIVE})",
        (ts(now - STALE_OWNER_AGE),),
    )


def retire_owner(conn: sqlite3.Connection, owner_id: str) -> None:
    conn.execute("DELETE FROM owners WHERE id = ?", (owner_id,))


def renew_leases(
    conn: sqlite3.Connection, clock: Clock, owner_id: str, run_ids: frozenset[str],
    lease: timedelta,
) -> frozenset[str]:
    now = clock.now()
    conn.execute("UPDATE owners SET heartbeat_at = ? WHERE id = ?", (ts(now), owner_id))
    if not run_ids:
        return frozenset()
    ids = sorted(run_ids)
    rows = conn.execute(
        f"UPDATE runs SET lease_expires_at = ? WHERE owner_id = ? AND status IN {ACTIVE}"
        f" AND id IN ({_marks(ids)}) RETURNING id",
        (ts(now + lease), owner_id, *ids),
    ).fetchall()
    return frozenset(row[0] for row in rows)


# --- sessions ------------------------------------------------------------------------


def ensure_session(conn: sqlite3.Connection, clock: Clock, key: str) -> Session:
    session = current_session(conn, key)
    if session is not None:
        return session
    now = ts(clock.now())
    session_id = new_id("ses")
    conn.execute(
        "INSERT INTO sessions (id, key, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (session_id, key, now, now),
    )
    created = session_by_id(conn, session_id)
    assert created is not None
    return created


def set_model(
    conn: sqlite3.Connection, clock: Clock, key: str, model: ModelRef | None
) -> Session:
    session = ensure_session(conn, clock, key)
    conn.execute(
        "UPDATE sessions SET model = ?, updated_at = ? WHERE id = ?",
        (None if model is None else str(model), ts(clock.now()), session.id),
    )
    changed = session_by_id(conn, session.id)
    assert changed is not None
    return changed


def set_delivery(
    conn: sqlite3.Connection, clock: Clock, key: str, delivery: Delivery
) -> Session:
    session = ensure_session(conn, clock, key)
    conn.execute(
        "UPDATE sessions SET delivery_channel = ?, delivery_target = ?, updated_at = ?"
        " WHERE id = ?",
        (delivery.channel, delivery.target, ts(clock.now()), session.id),
    )
    changed = session_by_id(conn, session.id)
    assert changed is not None
    return changed


def set_queue(conn: sqlite3.Connection, clock: Clock, key: str, patch: QueuePatch) -> Session:
    session = ensure_session(conn, clock, key)
    conn.execute(
        "UPDATE sessions SET queue_mode = COALESCE(?, queue_mode),"
        " debounce_ms = COALESCE(?, debounce_ms), queue_cap = COALESCE(?, queue_cap),"
        " drop_policy = COALESCE(?, drop_policy), updated_at = ? WHERE id = ?",
        (patch.mode and patch.mode.value, patch.debounce_ms, patch.cap,
         patch.drop and patch.drop.value, ts(clock.now()), session.id),
    )
    changed = session_by_id(conn, session.id)
    assert changed is not None
    return changed


def reset_session(conn: sqlite3.Connection, clock: Clock, key: str) -> ResetResult:
    old = current_session(conn, key)
    if old is None:
        raise UnknownSession(key)
    stop = stop_session(conn, clock, old.id, RunStatus.KILLED, DropReason.RESET)
    now = clock.now()
    conn.execute(
        "UPDATE sessions SET archived_at = ?, updated_at = ? WHERE id = ?",
        (ts(now), ts(now), old.id),
    )
    new_session_id = new_id("ses")
    conn.execute(
        "INSERT INTO sessions (id, key, created_at, updated_at, model, queue_mode, debounce_ms,"
        " queue_cap, drop_policy, delivery_channel, delivery_target)"
        " SELECT ?, key, ?, ?, model, queue_mode, debounce_ms, queue_cap, drop_policy,"
        " delivery_channel, delivery_target FROM sessions WHERE id = ?",
        (new_session_id, ts(now), ts(now), old.id),
    )
    archived, fresh = session_by_id(conn, old.id), session_by_id(conn, new_session_id)
    assert archived is not None
    assert fresh is not None
    return ResetResult(old=archived, new=fresh, stop=stop)


def archive_session(conn: sqlite3.Connection, clock: Clock, key: str) -> StopResult:
    session = current_session(conn, key)
    if session is None:
        raise UnknownSession(key)
    stop = stop_session(conn, clock, session.id, RunStatus.KILLED, DropReason.RESET)
    now = ts(clock.now())
    conn.execute("UPDATE sessions SET archived_at = ?, updated_at = ? WHERE id = ?",
                 (now, now, session.id))
    return stop


# --- inbound -------------------------------------------------------------------------


def accept_inbound(
    conn: sqlite3.Connection, clock: Clock, key: str, message: NewInbound,
    defaults: QueueSettings,
) -> Acceptance:
    duplicate = _delivered_before(conn, key, message)
    if duplicate is not None:
        return duplicate
    session = ensure_session(conn, clock, key)
    now = clock.now()
    queued = waiting(conn, session.id)
    plan = plan_overflow(len(queued), session.effective_queue(defaults))
    message_id = new_id("msg")
    conn.execute(
        "INSERT INTO inbound (id, session_id, session_key, channel, channel_message_id, sender,"
        " text, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (message_id, session.id, key, message.channel, message.channel_message_id,
         message.sender, message.text, ts(now)),
    )
    if message.reply_to is not None:
        conn.execute(
            "UPDATE sessions SET delivery_channel = ?, delivery_target = ? WHERE id = ?",
            (message.channel, message.reply_to, session.id),
        )
        session = dataclasses.replace(session, delivery=Delivery(message.channel,
                                                                 message.reply_to))
    doomed = [message_id] if plan.drop_new else [m.id for m in queued[: plan.drop_oldest]]
    dropped = _decide(conn, doomed, Fate.DROPPED, now, reason=plan.reason)
    _touch(conn, session.id, now)
    accepted = message_by_id(conn, message_id)
    assert accepted is not None
    return Acceptance(
        message=accepted,
        session=dataclasses.replace(session, updated_at=now),
        dropped=tuple(dropped),
        active_run=active_run(conn, session.id),
    )


def _delivered_before(
    conn: sqlite3.Connection, key: str, message: NewInbound
) -> Acceptance | None:
    """The first record of a message the channel delivered to this conversation before."""
    if message.channel_message_id is None:
        return None
    first = delivered(conn, key, message.channel, message.channel_message_id)
    if first is None:
        return None
    session = session_by_id(conn, first.session_id)
    assert session is not None
    return Acceptance(first, session, duplicate=True)


def drop_waiting(
    conn: sqlite3.Connection, clock: Clock, message_id: str, reason: DropReason
) -> InboundMessage | None:
    now = clock.now()
    dropped = _decide(conn, [message_id], Fate.DROPPED, now, reason=reason)
    if not dropped:
        return None
    _touch(conn, dropped[0].session_id, now)
    return dropped[0]


def delivered(
    conn: sqlite3.Connection, key: str, channel: str, channel_message_id: str
) -> InboundMessage | None:
    row = conn.execute(
        f"SELECT {INBOUND_COLUMNS} FROM inbound"
        " WHERE channel = ? AND session_key = ? AND channel_message_id = ?",
        (channel, key, channel_message_id),
    ).fetchone()
    return None if row is None else inbound_from(row)


# --- runs ----------------------------------------------------------------------------


def claim_next(
    conn: sqlite3.Connection, clock: Clock, session_id: str, owner_id: str, lease: timedelta,
    defaults: QueueSettings,
) -> Claim | Deferred | None:
    if active_run(conn, session_id) is not None:
        return None
    queued = waiting(conn, session_id)
    session = session_by_id(conn, session_id)
    if not queued or session is None:
        return None
    settings = session.effective_queue(defaults)
    now = clock.now()
    until = debounce_until(settings, [m.received_at for m in queued],
                           _last_run_ended(conn, session_id), now)
    if until is not None:
        return Deferred(until, settings)
    plan = plan_claim(settings.mode, [m.id for m in queued])
    run_id = new_id("run")
    conn.execute(
        "INSERT INTO runs (id, session_id, status, created_at, owner_id, lease_expires_at,"
        " queue_mode) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
        (run_id, session_id, ts(now), owner_id, ts(now + lease), settings.mode.value),
    )
    taken = _decide(conn, [plan.answered], Fate.ANSWERED, now, run_id=run_id)
    taken += _decide(conn, plan.merged, Fate.MERGED, now, run_id=run_id)
    dropped = _decide(conn, plan.dropped, Fate.DROPPED, now, reason=DropReason.SUPERSEDED)
    _summarize_dropped(conn, session_id, run_id, now)
    for message in taken:
        _append(conn, session_id, Role.USER, message.text, now, run_id, message.id)
    _touch(conn, session_id, now)
    run = run_by_id(conn, run_id)
    assert run is not None
    return Claim(run=run, session=session, messages=tuple(taken), dropped=tuple(dropped))


def _last_run_ended(conn: sqlite3.Connection, session_id: str) -> datetime | None:
    """When the session's latest run ended (runs of a session never overlap)."""
    row = conn.execute(
        "SELECT ended_at FROM runs WHERE session_id = ? ORDER BY created_at DESC, id DESC"
        " LIMIT 1",
        (session_id,),
    ).fetchone()
    return None if row is None else opt_dt(row[0])


def _unsent_summaries(conn: sqlite3.Connection, session_id: str) -> list[tuple[str, str]]:
    """(id, text) of the session's messages dropped under ``summarize`` whose summary is
    not settled yet (no run was told, nothing cleared it), oldest first."""
    return conn.execute(
        "SELECT id, text FROM inbound INDEXED BY inbound_summarized"
        " WHERE session_id = ? AND reason = 'queue_full_summarized'"
        " AND NOT EXISTS (SELECT 1 FROM queue_summaries q WHERE q.message_id = inbound.id)"
        " ORDER BY received_at, id",
        (session_id,),
    ).fetchall()


def _summarize_dropped(
    conn: sqlite3.Connection, session_id: str, run_id: str, now: datetime
) -> None:
    """Tell ``run_id`` (in a note before its new messages) what the unsent summaries say."""
    rows = _unsent_summaries(conn, session_id)
    if not rows:
        return
    conn.executemany(
        "INSERT INTO queue_summaries (message_id, run_id) VALUES (?, ?)",
        [(row[0], run_id) for row in rows],
    )
    _append(conn, session_id, Role.NOTE, summary_note([row[1] for row in rows]), now, run_id)


def _clear_summaries(
    conn: sqlite3.Connection, session_id: str, reason: DropReason
) -> list[InboundMessage]:
    """Settle the unsent summaries as cleared (by stop, or a reset): no run is told."""
    ids = [row[0] for row in _unsent_summaries(conn, session_id)]
    conn.executemany("INSERT INTO queue_summaries (message_id, cleared) VALUES (?, ?)",
                     [(message_id, reason.value) for message_id in ids])
    cleared = [message_by_id(conn, message_id) for message_id in ids]
    return [message for message in cleared if message is not None]


def start_run(
    conn: sqlite3.Connection, clock: Clock, run_id: str, owner_id: str, model: ModelRef,
    deadline_at: datetime,
) -> Run | None:
    now = clock.now()
    cursor = conn.execute(
        "UPDATE runs SET status = 'running', started_at = ?, provider = ?, model = ?,"
        " deadline_at = ? WHERE id = ? AND owner_id = ? AND status = 'queued'",
        (ts(now), model.provider, model.model, ts(deadline_at), run_id, owner_id),
    )
    if not cursor.rowcount:
        return None
    run = run_by_id(conn, run_id)
    assert run is not None
    _touch(conn, run.session_id, now)
    return run


def take_steering(
    conn: sqlite3.Connection, clock: Clock, run_id: str, owner_id: str, reply_so_far: str,
) -> list[InboundMessage] | None:
    run = run_by_id(conn, run_id)
    if run is None or run.owner_id != owner_id or run.status is not RunStatus.RUNNING:
        return None
    if run.queue_mode is not QueueMode.STEER:  # its own mode: a later change is for later runs
        return []
    queued = waiting(conn, run.session_id)
    if not queued:
        return []
    now = clock.now()
    if reply_so_far:
        _append(conn, run.session_id, Role.ASSISTANT, reply_so_far, now, run_id)
    taken = _decide(conn, [m.id for m in queued], Fate.MERGED, now, run_id=run_id)
    _summarize_dropped(conn, run.session_id, run_id, now)
    for message in taken:
        _append(conn, run.session_id, Role.USER, message.text, now, run_id, message.id)
    _touch(conn, run.session_id, now)
    return taken


def finish_run(
    conn: sqlite3.Connection, clock: Clock, run_id: str, owner_id: str, outcome: RunOutcome
) -> Run | None:
    run = run_by_id(conn, run_id)
    if run is None or run.owner_id != owner_id or not can_transition(run.status, outcome.status):
        return None
    now = clock.now()
    model = outcome.model or run.model
    extra = outcome.usage.beyond(run.usage)  # the summaries' calls are recorded already
    usage = run.usage + extra
    cursor = conn.execute(
        "UPDATE runs SET status = ?, ended_at = ?, runtime_ms = ?, input_tokens = ?,"
        " output_tokens = ?, cached_tokens = ?, error = ?, provider = ?, model = ?, profile = ?"
        " WHERE id = ? AND owner_id = ? AND status = ?",
        (outcome.status.value, ts(now), runtime_ms(run, now), usage.input_tokens,
         usage.output_tokens, usage.cached_tokens, outcome.error, model and model.provider,
         model and model.model, outcome.profile, run_id, owner_id, run.status.value),
    )
    if not cursor.rowcount:
        return None
    conn.executemany(
        "INSERT INTO run_attempts (run_id, seq, provider, model, profile, outcome, error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(run_id, n, a.model.provider, a.model.model, a.profile, a.outcome, a.error)
         for n, a in enumerate(outcome.attempts)],
    )
    if outcome.reply:
        stopped = outcome.status is not RunStatus.DONE
        _append(conn, run.session_id, Role.ASSISTANT, outcome.reply, now, run_id, stopped=stopped)
    _add_usage(conn, run.session_id, extra, now)
    _enqueue_delivery(conn, run, outcome, now)
    return run_by_id(conn, run_id)


def _add_usage(conn: sqlite3.Connection, session_id: str, usage: Usage, now: datetime) -> None:
    conn.execute(
        "UPDATE sessions SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
        " cached_tokens = cached_tokens + ?, updated_at = ? WHERE id = ?",
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens, ts(now), session_id),
    )


def append_summary(
    conn: sqlite3.Connection, clock: Clock, session_id: str, text: str, covers_through: int,
    usage: Usage, run_id: str | None, owner_id: str | None,
) -> bool:
    now = clock.now()
    if run_id is not None:
        run = run_by_id(conn, run_id)
        if run is None or run.owner_id != owner_id or not run.status.active:
            return False
    conn.execute(
        "INSERT INTO transcript (session_id, run_id, role, text, created_at, covers_through)"
        " VALUES (?, ?, 'note', ?, ?, ?)",
        (session_id, run_id, text, ts(now), covers_through),
    )
    _add_usage(conn, session_id, usage, now)
    if run_id is not None:
        conn.execute(
            "UPDATE runs SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
            " cached_tokens = cached_tokens + ? WHERE id = ?",
            (usage.input_tokens, usage.output_tokens, usage.cached_tokens, run_id),
        )
    return True


# --- cooldowns -----------------------------------------------------------------------


def record_cooldown(
    conn: sqlite3.Connection, clock: Clock, profile_key: str, reason: str,
    windows: tuple[float, ...], retry_after: float | None, model: str | None,
    key_fingerprint: str | None,
) -> Cooldown:
    """A rest of the whole key is stored with model '' (the rows schema 5 had mean that).
    The failures of another key are not counted on."""
    now = clock.now()
    row = conn.execute(
        "SELECT failures, key_fingerprint FROM cooldowns WHERE profile_key = ? AND model = ?",
        (profile_key, model or ""),
    ).fetchone()
    failures = (row[0] if row and same_key(row[1], key_fingerprint) else 0) + 1
    until = now + timedelta(seconds=cooldown_window(failures, windows, retry_after))
    conn.execute(
        "INSERT INTO cooldowns (profile_key, model, until, failures, reason, updated_at,"
        " key_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (profile_key, model)"
        " DO UPDATE SET until = excluded.until, failures = excluded.failures,"
        " reason = excluded.reason, updated_at = excluded.updated_at,"
        " key_fingerprint = excluded.key_fingerprint",
        (profile_key, model or "", ts(until), failures, reason, ts(now), key_fingerprint),
    )
    return Cooldown(profile_key, until, failures, reason, model or None, key_fingerprint)


def clear_cooldown(conn: sqlite3.Connection, profile_key: str, model: str | None) -> None:
    conn.execute("DELETE FROM cooldowns WHERE profile_key = ? AND model IN ('', ?)",
                 (profile_key, model or ""))


def _enqueue_delivery(
    conn: sqlite3.Connection, run: Run, outcome: RunOutcome, now: datetime
) -> None:
    session = session_by_id(conn, run.session_id)
    if session is None or session.delivery is None:
        return
    reply = REPLY_SEPARATOR.join(row[0] for row in conn.execute(
        "SELECT text FROM transcript WHERE run_id = ? AND role = 'assistant' ORDER BY seq",
        (run.id,),
    ))
    text = delivery_text(outcome.status, reply, outcome.error)
    if text is None:
        return
    conn.execute(
        "INSERT INTO outbox (id, session_id, run_id, channel, target, text, next_attempt_at,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (new_id("out"), run.session_id, run.id, session.delivery.channel,
         session.delivery.target, text, ts(now), ts(now)),
    )


# --- outbox --------------------------------------------------------------------------


def take_deliveries(
    conn: sqlite3.Connection, clock: Clock, channel: str, lease: timedelta, limit: int
) -> list[Outbound]:
    now = clock.now()
    rows = conn.execute(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE channel = ? AND status = 'pending'"
        " AND next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM outbox e"
        " WHERE e.channel = o.channel AND e.target = o.target AND e.status = 'pending'"
        " AND e.seq < o.seq) ORDER BY seq LIMIT ?",
        (channel, ts(now), limit),
    ).fetchall()
    taken = []
    for row in rows:
        item = outbound_from(row)
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
            (ts(now + lease), item.id),
        )
        taken.append(dataclasses.replace(item, attempts=item.attempts + 1,
                                         next_attempt_at=now + lease))
    return taken


def mark_delivered(conn: sqlite3.Connection, clock: Clock, outbound_id: str) -> bool:
    cursor = conn.execute(
        "UPDATE outbox SET status = 'delivered', delivered_at = ?, last_error = NULL"
        " WHERE id = ? AND status = 'pending'",
        (ts(clock.now()), outbound_id),
    )
    return bool(cursor.rowcount)


def mark_undelivered(
    conn: sqlite3.Connection, outbound_id: str, error: str, retry_at: datetime | None
) -> bool:
    if retry_at is None:
        cursor = conn.execute(
            "UPDATE outbox SET status = 'rejected', last_error = ?"
            " WHERE id = ? AND status = 'pending'",
            (error, outbound_id),
        )
    else:
        cursor = conn.execute(
            "UPDATE outbox SET last_error = ?, next_attempt_at = ?"
            " WHERE id = ? AND status = 'pending'",
            (error, ts(retry_at), outbound_id),
        )
    return bool(cursor.rowcount)


def stop_session(
    conn: sqlite3.Connection, clock: Clock, session_id: str, status: RunStatus,
    drop_reason: DropReason | None,
) -> StopResult:
    now = clock.now()
    dropped: list[InboundMessage] = []
    cleared: list[InboundMessage] = []
    if drop_reason is not None:
        ids = [m.id for m in waiting(conn, session_id)]
        dropped = _decide(conn, ids, Fate.DROPPED, now, reason=drop_reason)
        cleared = _clear_summaries(conn, session_id, drop_reason)
        if dropped:
            _touch(conn, session_id, now)
    run = active_run(conn, session_id)
    result = StopResult(StopOutcome.NO_RUN, None, tuple(dropped), tuple(cleared))
    if run is None:
        return result
    plan = plan_stop(run, status, now)
    if plan.end_reason is not None:
        ended = _end(conn, run, status, now, plan.end_reason)
        return dataclasses.replace(result, outcome=StopOutcome.ENDED, run=ended)
    if plan.request is not None:
        conn.execute("UPDATE runs SET stop_requested = ? WHERE id = ? AND status = 'running'",
                     (plan.request.value, run.id))
    return dataclasses.replace(result, outcome=StopOutcome.SIGNALLED,
                               run=run_by_id(conn, run.id))


def recover_expired(conn: sqlite3.Connection, clock: Clock) -> list[Run]:
    now = clock.now()
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN {ACTIVE} AND lease_expires_at < ?",
        (ts(now),),
    ).fetchall()
    return _end_all(conn, [run_from(row) for row in rows], now, ENDED_LEASE_EXPIRED)


def recover_owner(
    conn: sqlite3.Connection, clock: Clock, owner_id: str, reason: str
) -> list[Run]:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN {ACTIVE} AND owner_id = ?",
        (owner_id,),
    ).fetchall()
    return _end_all(conn, [run_from(row) for row in rows], clock.now(), reason)


def _end_all(
    conn: sqlite3.Connection, runs: list[Run], now: datetime, reason: str
) -> list[Run]:
    ended = (_end(conn, run, RunStatus.INTERRUPTED, now, reason) for run in runs)
    return [run for run in ended if run is not None]
