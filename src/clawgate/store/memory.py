"""An in-memory store for tests, with the same behaviour as the SQL stores.

``MemoryDatabase`` is the shared state (what a database file is to SQLite); each
``MemoryStore`` is one process's handle on it, so a test can "crash" a process by closing its
handle while another carries on. Every command runs without awaiting in between, which makes
it one transaction under asyncio; each yields to the loop once first, like a real store.
The schema's triggers are mirrored by ``_transition`` and ``_decide``, which refuse what the
domain forbids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Container, Coroutine, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from clawgate.clock import Clock, SystemClock
from clawgate.domain import (
    ENDED_LEASE_EXPIRED,
    REPLY_SEPARATOR,
    STOP_STATUSES,
    Attempt,
    ContextEntry,
    Cooldown,
    Delivery,
    DeliveryStatus,
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
    StoredEvent,
    TranscriptEntry,
    Usage,
    can_transition,
    check_inbound,
    check_key,
    cooldown_window,
    debounce_until,
    delivery_text,
    merge_patch,
    plan_claim,
    plan_overflow,
    plan_stop,
    runtime_ms,
    summary_note,
)
from clawgate.errors import InvalidInput, StoreClosed, StoreError, UnknownSession
from clawgate.ids import new_id
from clawgate.store import findings as found
from clawgate.store.protocol import (
    Acceptance,
    Claim,
    Counts,
    Deferred,
    Finding,
    ResetResult,
    SessionSummary,
    StopOutcome,
    StopResult,
)
from clawgate.store.version import VersionBoard

_T = TypeVar("_T")
_P = ParamSpec("_P")
_Found = TypeVar("_Found", bound=Sized)


@dataclass
class MemoryDatabase:
    sessions: dict[str, Session] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # key -> session id
    runs: dict[str, Run] = field(default_factory=dict)
    inbound: dict[str, InboundMessage] = field(default_factory=dict)
    dedup: dict[tuple[str, str, str], str] = field(default_factory=dict)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    owners: dict[str, OwnerInfo] = field(default_factory=dict)
    outbox: list[Outbound] = field(default_factory=list)
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    cooldowns: dict[tuple[str, str | None], Cooldown] = field(default_factory=dict)
    events: list[StoredEvent] = field(default_factory=list)
    version: VersionBoard = field(default_factory=VersionBoard)  # steps at every write


def _writes(
    command: Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _T]]:
    """A command that writes: the database's version moves once it has run (as SQLite's
    does at a commit), so whoever reads the version after the change sees a new one."""

    @functools.wraps(command)
    async def wrapper(self: MemoryStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await command(self, *args, **kwargs)
        finally:
            self.db.version.step()

    return wrapper


def _writes_if_any(
    command: Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _Found]],
) -> Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _Found]]:
    """A command that writes only what it returns (recovered runs, say): when it finds
    nothing, nothing was written and the version stays (pollers call these often)."""
    return _writes_when(lambda found: bool(found))(command)


def _writes_when(
    wrote: Callable[[_T], bool],
) -> Callable[[Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _T]]],
              Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _T]]]:
    """A command that writes only when ``wrote`` says so of its result: otherwise the
    version stays, as SQLite's does after a transaction that changed nothing."""

    def decorate(
        command: Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _T]],
    ) -> Callable[Concatenate[MemoryStore, _P], Coroutine[Any, Any, _T]]:
        @functools.wraps(command)
        async def wrapper(self: MemoryStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            result = await command(self, *args, **kwargs)
            if wrote(result):
                self.db.version.step()
            return result

        return wrapper

    return decorate


class MemoryStore:
    def __init__(self, db: MemoryDatabase | None = None, clock: Clock | None = None) -> None:
        self.db = db if db is not None else MemoryDatabase()
        self.clock = clock or SystemClock()
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def version(self) -> int:
        return (await self._enter()).version.value

    async def changed(self, after: int, within: float) -> int:
        return await (await self._enter()).version.changed(after, within)

    async def _enter(self) -> MemoryDatabase:
        if self._closed:
            raise StoreClosed()
        await asyncio.sleep(0)
        if self._closed:
            raise StoreClosed()
        return self.db

    # --- owners and leases -----------------------------------------------------------

    @_writes
    async def register_owner(self, owner: OwnerInfo) -> None:
        db = await self._enter()
        db.owners[owner.id] = owner

    @_writes
    async def retire_owner(self, owner_id: str) -> None:
        db = await self._enter()
        db.owners.pop(owner_id, None)

    async def owners_with_active_runs(self) -> list[OwnerInfo]:
        db = await self._enter()
        ids = {r.owner_id for r in db.runs.values() if r.status.active}
        return [owner for owner_id, owner in db.owners.items() if owner_id in ids]

    @_writes
    async def renew_leases(
        self, owner_id: str, run_ids: frozenset[str], lease: timedelta
    ) -> frozenset[str]:
        db = await self._enter()
        until = self.clock.now() + lease
        renewed = set()
        for run_id in run_ids:
            run = db.runs.get(run_id)
            if run is not None and run.owner_id == owner_id and run.status.active:
                db.runs[run_id] = dataclasses.replace(run, lease_expires_at=until)
                renewed.add(run_id)
        return frozenset(renewed)

    async def stop_requests(self, owner_id: str) -> dict[str, RunStatus]:
        db = await self._enter()
        return {
            r.id: r.stop_requested
            for r in db.runs.values()
            if r.owner_id == owner_id and r.status.active and r.stop_requested is not None
        }

    # --- sessions --------------------------------------------------------------------

    @_writes
    async def ensure_session(self, key: str) -> Session:
        check_key(key)
        return self._ensure(await self._enter(), key)

    async def get_session(self, key: str) -> Session | None:
        db = await self._enter()
        session_id = db.current.get(key)
        return None if session_id is None else db.sessions[session_id]

    async def get_session_by_id(self, session_id: str) -> Session | None:
        db = await self._enter()
        return db.sessions.get(session_id)

    async def queue_settings(self, session_ids: frozenset[str]) -> dict[str, QueuePatch]:
        db = await self._enter()
        found = (db.sessions.get(session_id) for session_id in session_ids)
        return {s.id: s.queue for s in found if s is not None and s.archived_at is None}

    async def summarize_session(self, key: str) -> SessionSummary | None:
        db = await self._enter()
        session_id = db.current.get(key)
        return None if session_id is None else self._summary(db, db.sessions[session_id])

    async def list_sessions(self, limit: int = 100) -> list[SessionSummary]:
        db = await self._enter()
        current = [db.sessions[sid] for sid in db.current.values()]
        current.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return [self._summary(db, s) for s in current[:limit]]

    @_writes
    async def set_model(self, key: str, model: ModelRef | None) -> Session:
        check_key(key)
        db = await self._enter()
        session = self._ensure(db, key)
        changed = self._update_session(db, session.id, model=model)
        if changed.model != session.model:
            self._event(db, session.id, "session.model", changed.updated_at,
                        detail={"model": None if model is None else str(model)})
        return changed

    @_writes
    async def set_delivery(self, key: str, delivery: Delivery) -> Session:
        check_key(key)
        db = await self._enter()
        session = self._ensure(db, key)
        return self._update_session(db, session.id, delivery=delivery)

    @_writes
    async def set_queue(self, key: str, patch: QueuePatch) -> Session:
        check_key(key)
        db = await self._enter()
        session = self._ensure(db, key)
        changed = self._update_session(db, session.id, queue=merge_patch(session.queue, patch))
        if changed.queue != session.queue:
            queue = changed.queue
            self._event(db, session.id, "session.queue", changed.updated_at, detail={
                "mode": queue.mode and queue.mode.value, "debounceMs": queue.debounce_ms,
                "cap": queue.cap, "drop": queue.drop and queue.drop.value})
        return changed

    @_writes
    async def reset_session(self, key: str) -> ResetResult:
        db, session_id = await self._existing(key)
        stop, archived = self._archive(db, session_id)
        now = archived.updated_at
        fresh = Session(
            id=new_id("ses"), key=key, created_at=now, updated_at=now,
            model=archived.model, queue=archived.queue, delivery=archived.delivery,
        )
        db.sessions[fresh.id] = fresh
        db.current[key] = fresh.id
        self._event(db, fresh.id, "session.created", now, detail={"key": key})
        return ResetResult(old=archived, new=fresh, stop=stop)

    @_writes
    async def archive_session(self, key: str) -> StopResult:
        db, session_id = await self._existing(key)
        stop, _ = self._archive(db, session_id)
        del db.current[key]
        return stop

    def _archive(self, db: MemoryDatabase, session_id: str) -> tuple[StopResult, Session]:
        stop = self._stop(db, session_id, RunStatus.KILLED, DropReason.RESET)
        archived = self._update_session(db, session_id, archived_at=self.clock.now())
        self._event(db, session_id, "session.archived", archived.updated_at,
                    detail={"key": archived.key})
        return stop, archived

    # --- the event feed --------------------------------------------------------------

    async def events_after(
        self, seq: int, keys: frozenset[str] | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        db = await self._enter()
        found = [e for e in db.events[seq:] if keys is None or e.session_key in keys]
        return found[:limit]

    async def last_event_seq(self) -> int:
        db = await self._enter()
        return len(db.events)

    def _event(
        self, db: MemoryDatabase, session_id: str, kind: str, at: datetime,
        run_id: str | None = None, message_id: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        db.events.append(StoredEvent(
            seq=len(db.events) + 1, at=at, session_id=session_id,
            session_key=db.sessions[session_id].key, kind=kind, run_id=run_id,
            message_id=message_id, detail=detail or {}))

    # --- inbound ---------------------------------------------------------------------

    @_writes
    async def accept_inbound(
        self, key: str, message: NewInbound, defaults: QueueSettings
    ) -> Acceptance:
        check_key(key)
        check_inbound(message)
        db = await self._enter()
        if message.channel_message_id is not None:
            first_id = db.dedup.get((message.channel, key, message.channel_message_id))
            if first_id is not None:
                first = db.inbound[first_id]
                return Acceptance(first, db.sessions[first.session_id], duplicate=True)
        session = self._ensure(db, key)
        now = self.clock.now()
        queued = self._waiting(db, session.id)
        plan = plan_overflow(len(queued), session.effective_queue(defaults))
        accepted = InboundMessage(
            id=new_id("msg"), session_id=session.id, channel=message.channel, text=message.text,
            received_at=now, channel_message_id=message.channel_message_id,
            sender=message.sender,
        )
        db.inbound[accepted.id] = accepted
        if message.channel_message_id is not None:
            db.dedup[(message.channel, key, message.channel_message_id)] = accepted.id
        self._event(db, session.id, "message.pending", now, message_id=accepted.id,
                    detail={"channel": accepted.channel, "preview": accepted.text[:120]})
        if message.reply_to is not None:
            session = self._update_session(
                db, session.id, delivery=Delivery(message.channel, message.reply_to))
        doomed = [accepted.id] if plan.drop_new else [m.id for m in queued[: plan.drop_oldest]]
        dropped = self._decide(db, doomed, Fate.DROPPED, reason=plan.reason)
        session = self._update_session(db, session.id)
        return Acceptance(
            message=db.inbound[accepted.id], session=session, dropped=tuple(dropped),
            active_run=self._active(db, session.id),
        )

    async def find_delivered(
        self, key: str, channel: str, channel_message_id: str
    ) -> InboundMessage | None:
        db = await self._enter()
        first_id = db.dedup.get((channel, key, channel_message_id))
        return None if first_id is None else db.inbound[first_id]

    async def get_message(self, message_id: str) -> InboundMessage | None:
        db = await self._enter()
        return db.inbound.get(message_id)

    @_writes
    async def drop_waiting(self, message_id: str, reason: DropReason) -> InboundMessage | None:
        db = await self._enter()
        if message_id not in db.inbound:
            return None
        dropped = self._decide(db, [message_id], Fate.DROPPED, reason=reason)
        if not dropped:
            return None
        self._update_session(db, dropped[0].session_id)
        return dropped[0]

    async def list_inbound(self, session_id: str, limit: int = 100) -> list[InboundMessage]:
        db = await self._enter()
        found = [m for m in db.inbound.values() if m.session_id == session_id]
        found.sort(key=lambda m: (m.received_at, m.id))
        return _newest(found, limit)

    async def run_messages(self, run_id: str) -> list[InboundMessage]:
        db = await self._enter()
        found = [m for m in db.inbound.values() if m.run_id == run_id]
        return sorted(found, key=lambda m: (m.received_at, m.id))

    async def claimable_sessions(
        self, session_ids: frozenset[str] | None = None, limit: int = 100,
        excluding: frozenset[str] = frozenset(),
    ) -> list[str]:
        db = await self._enter()
        waiting = {m.session_id for m in db.inbound.values() if m.fate is Fate.PENDING}
        waiting -= excluding
        if session_ids is not None:
            waiting &= session_ids
        return [sid for sid in sorted(waiting) if self._active(db, sid) is None][:limit]

    # --- runs ------------------------------------------------------------------------

    @_writes_when(lambda claimed: isinstance(claimed, Claim))  # waiting is no write
    async def claim_next(
        self, session_id: str, owner_id: str, lease: timedelta, defaults: QueueSettings
    ) -> Claim | Deferred | None:
        db = await self._enter()
        queued = self._waiting(db, session_id)
        session = db.sessions.get(session_id)
        if self._active(db, session_id) is not None or not queued or session is None:
            return None
        settings = session.effective_queue(defaults)
        now = self.clock.now()
        until = debounce_until(settings, [m.received_at for m in queued],
                               self._last_run_ended(db, session_id), now)
        if until is not None:
            return Deferred(until, settings)
        plan = plan_claim(settings.mode, [m.id for m in queued])
        run = Run(
            id=new_id("run"), session_id=session_id, status=RunStatus.QUEUED, created_at=now,
            owner_id=owner_id, lease_expires_at=now + lease, queue_mode=settings.mode,
        )
        db.runs[run.id] = run
        self._event(db, session_id, "run.queued", now, run_id=run.id,
                    detail={"status": "queued"})
        taken = self._decide(db, [plan.answered], Fate.ANSWERED, run_id=run.id)
        taken += self._decide(db, plan.merged, Fate.MERGED, run_id=run.id)
        dropped = self._decide(db, plan.dropped, Fate.DROPPED, reason=DropReason.SUPERSEDED)
        self._summarize_dropped(db, session_id, run.id)
        for message in taken:
            self._append(db, session_id, Role.USER, message.text, run.id, message.id)
        self._update_session(db, session_id)
        return Claim(run=run, session=session, messages=tuple(taken), dropped=tuple(dropped))

    @_writes
    async def start_run(
        self, run_id: str, owner_id: str, model: ModelRef, deadline_at: datetime
    ) -> Run | None:
        db = await self._enter()
        run = db.runs.get(run_id)
        if run is None or run.owner_id != owner_id or run.status is not RunStatus.QUEUED:
            return None
        started = self._transition(
            db, run, RunStatus.RUNNING, started_at=self.clock.now(), model=model,
            deadline_at=deadline_at,
        )
        self._update_session(db, run.session_id)
        return started

    @_writes
    async def take_steering(
        self, run_id: str, owner_id: str, reply_so_far: str
    ) -> list[InboundMessage] | None:
        db = await self._enter()
        run = db.runs.get(run_id)
        if run is None or run.owner_id != owner_id or run.status is not RunStatus.RUNNING:
            return None
        queued = self._waiting(db, run.session_id)
        if run.queue_mode is not QueueMode.STEER or not queued:  # its own mode, not today's
            return []
        if reply_so_far:
            self._append(db, run.session_id, Role.ASSISTANT, reply_so_far, run_id)
        taken = self._decide(db, [m.id for m in queued], Fate.MERGED, run_id=run_id)
        self._summarize_dropped(db, run.session_id, run_id)
        for message in taken:
            self._append(db, run.session_id, Role.USER, message.text, run_id, message.id)
        self._update_session(db, run.session_id)
        return taken

    @_writes
    async def finish_run(self, run_id: str, owner_id: str, outcome: RunOutcome) -> Run | None:
        db = await self._enter()
        run = db.runs.get(run_id)
        if run is None or run.owner_id != owner_id or not can_transition(
            run.status, outcome.status
        ):
            return None
        now = self.clock.now()
        extra = outcome.usage.beyond(run.usage)  # the summaries' calls are recorded already
        ended = self._transition(
            db, run, outcome.status, ended_at=now, runtime_ms=runtime_ms(run, now),
            usage=run.usage + extra, error=outcome.error, model=outcome.model or run.model,
            profile=outcome.profile,
        )
        db.attempts[run_id] = list(outcome.attempts)
        if outcome.reply:
            stopped = outcome.status is not RunStatus.DONE
            self._append(db, run.session_id, Role.ASSISTANT, outcome.reply, run_id, stopped=stopped)
        session = db.sessions[run.session_id]
        self._update_session(db, session.id, usage=session.usage + extra)
        self._enqueue_delivery(db, ended, outcome)
        return ended

    @_writes
    async def request_stop(
        self, session_id: str, status: RunStatus = RunStatus.KILLED, clear_queue: bool = True
    ) -> StopResult:
        if status not in STOP_STATUSES - {RunStatus.TIMEOUT}:
            raise InvalidInput(f"a stop ends a run killed or interrupted, not {status}")
        db = await self._enter()
        return self._stop(db, session_id, status, DropReason.STOPPED if clear_queue else None)

    @_writes_if_any
    async def recover_expired(self) -> list[Run]:
        db = await self._enter()
        now = self.clock.now()
        expired = [r for r in db.runs.values() if r.status.active and r.lease_expires_at < now]
        return [self._end(db, run, RunStatus.INTERRUPTED, ENDED_LEASE_EXPIRED) for run in expired]

    @_writes_if_any
    async def recover_owner(self, owner_id: str, reason: str) -> list[Run]:
        db = await self._enter()
        owned = [r for r in db.runs.values() if r.status.active and r.owner_id == owner_id]
        return [self._end(db, run, RunStatus.INTERRUPTED, reason) for run in owned]

    async def get_run(self, run_id: str) -> Run | None:
        db = await self._enter()
        return db.runs.get(run_id)

    async def list_runs(self, session_id: str, limit: int = 100) -> list[Run]:
        db = await self._enter()
        found = [r for r in db.runs.values() if r.session_id == session_id]
        found.sort(key=lambda r: (r.created_at, r.id))
        return _newest(found, limit)

    async def active_runs(self) -> list[Run]:
        db = await self._enter()
        return [r for r in db.runs.values() if r.status.active]

    # --- transcript ------------------------------------------------------------------

    async def transcript(
        self, session_id: str, limit: int | None = None
    ) -> list[TranscriptEntry]:
        db = await self._enter()
        entries = [e for e in db.transcript if e.session_id == session_id]
        return entries if limit is None else _newest(entries, limit)

    async def conversation(self, session_id: str, limit: int) -> list[ContextEntry]:
        db = await self._enter()
        entries = [e for e in db.transcript if e.session_id == session_id]
        summaries = [e for e in entries if e.covers_through is not None]
        best = max(summaries, key=lambda e: (e.covers_through, e.seq), default=None)
        after = -1 if best is None or best.covers_through is None else best.covers_through
        kept = _newest([ContextEntry(e.seq, e.role, e.text) for e in entries
                        if e.seq > after and e.covers_through is None], limit)
        if best is None:
            return kept
        return [ContextEntry(best.seq, Role.NOTE, best.text, summary=True), *kept]

    @_writes
    async def append_summary(
        self, session_id: str, text: str, covers_through: int, usage: Usage,
        run_id: str | None = None, owner_id: str | None = None,
    ) -> bool:
        db = await self._enter()
        if run_id is not None:
            run = db.runs.get(run_id)
            if run is None or run.owner_id != owner_id or not run.status.active:
                return False
        self._append(db, session_id, Role.NOTE, text, run_id, covers_through=covers_through)
        session = db.sessions[session_id]
        self._update_session(db, session_id, usage=session.usage + usage)
        run = db.runs.get(run_id or "")
        if run is not None:
            db.runs[run.id] = dataclasses.replace(run, usage=run.usage + usage)
        return True

    async def run_reply(self, run_id: str, after_message: str | None = None) -> str:
        db = await self._enter()
        entries = [e for e in db.transcript if e.run_id == run_id]
        since = next((e.seq for e in entries
                      if after_message is not None and e.message_id == after_message), -1)
        return REPLY_SEPARATOR.join(
            e.text for e in entries if e.role is Role.ASSISTANT and e.seq > since)

    # --- outbox --------------------------------------------------------------------

    @_writes_if_any
    async def take_deliveries(
        self, channel: str, lease: timedelta, limit: int = 20
    ) -> list[Outbound]:
        db = await self._enter()
        now = self.clock.now()
        seen_targets: set[str] = set()
        taken: list[Outbound] = []
        for index, item in enumerate(db.outbox):
            if item.channel != channel or item.status is not DeliveryStatus.PENDING:
                continue
            first_for_target = item.target not in seen_targets
            seen_targets.add(item.target)
            if first_for_target and item.next_attempt_at <= now and len(taken) < limit:
                claimed = dataclasses.replace(
                    item, attempts=item.attempts + 1, next_attempt_at=now + lease)
                db.outbox[index] = claimed
                taken.append(claimed)
        return taken

    @_writes
    async def mark_delivered(self, outbound_id: str) -> bool:
        db = await self._enter()
        return self._settle(db, outbound_id, status=DeliveryStatus.DELIVERED,
                            delivered_at=self.clock.now(), last_error=None)

    @_writes
    async def mark_undelivered(
        self, outbound_id: str, error: str, retry_at: datetime | None
    ) -> bool:
        db = await self._enter()
        if retry_at is None:
            return self._settle(db, outbound_id, status=DeliveryStatus.REJECTED,
                                last_error=error)
        return self._settle(db, outbound_id, last_error=error, next_attempt_at=retry_at)

    async def list_outbox(self, session_id: str, limit: int = 100) -> list[Outbound]:
        db = await self._enter()
        return _newest([o for o in db.outbox if o.session_id == session_id], limit)

    # --- model routing -------------------------------------------------------------

    async def list_attempts(self, run_id: str) -> list[Attempt]:
        db = await self._enter()
        return list(db.attempts.get(run_id, []))

    async def cooldowns(self) -> list[Cooldown]:
        db = await self._enter()
        return list(db.cooldowns.values())

    @_writes
    async def record_cooldown(
        self, profile_key: str, reason: str, windows: tuple[float, ...],
        retry_after: float | None, model: str | None = None,
        key_fingerprint: str | None = None,
    ) -> Cooldown:
        db = await self._enter()
        previous = db.cooldowns.get((profile_key, model))
        counted = previous is not None and previous.holds_for(key_fingerprint)
        failures = (previous.failures if previous and counted else 0) + 1
        until = self.clock.now() + timedelta(
            seconds=cooldown_window(failures, windows, retry_after))
        db.cooldowns[profile_key, model] = Cooldown(
            profile_key, until, failures, reason, model, key_fingerprint)
        return db.cooldowns[profile_key, model]

    @_writes
    async def clear_cooldown(self, profile_key: str, model: str | None = None) -> None:
        db = await self._enter()
        db.cooldowns.pop((profile_key, None), None)
        db.cooldowns.pop((profile_key, model), None)

    # --- health ----------------------------------------------------------------------

    async def counts(self) -> Counts:
        db = await self._enter()
        active = sum(1 for r in db.runs.values() if r.status.active)
        waiting = sum(1 for m in db.inbound.values() if m.fate is Fate.PENDING)
        return Counts(len(db.current), active, waiting)

    async def audit(self) -> list[Finding]:
        """The checks of the SQL stores that a memory database can fail (it has no pages,
        guards or transition table of its own to damage), in the same order."""
        db = await self._enter()
        now = self.clock.now()
        runs, messages = list(db.runs.values()), list(db.inbound.values())
        broken = [table for table, points_at, among in _references(db)
                  if points_at is not None and points_at not in among]
        findings = [found.dangling_references(len(broken), broken)] if broken else []
        findings += [found.contradictory_run(r.id, r.status) for r in runs
                     if found.is_contradictory(r)]
        active = Counter(r.session_id for r in runs if r.status.active)
        findings += [found.several_active_runs(session_id, count)
                     for session_id, count in active.items() if count > 1]
        findings += [found.unexplained_fate(m.id, m.fate) for m in messages
                     if found.is_unexplained(m)]
        findings += [found.orphaned_run(r.id, db.sessions[r.session_id].key, r.owner_id,
                                        r.lease_expires_at)
                     for r in runs if r.status.active and r.lease_expires_at < now
                     and r.session_id in db.sessions]
        findings += [found.past_deadline(r.id, deadline) for r in runs
                     if (deadline := found.overdue_deadline(r, now)) is not None]
        archived = {s.id for s in db.sessions.values() if s.archived_at is not None}
        findings += [found.waiting_in_archived(m.id) for m in messages
                     if m.fate is Fate.PENDING and m.session_id in archived]
        findings += [found.summary_undeliverable(m.id) for m in sorted(
                         messages, key=lambda m: (m.received_at, m.id))
                     if m.reason is DropReason.QUEUE_FULL_SUMMARIZED and m.session_id in archived
                     and m.summarized_in is None and m.summary_cleared is None]
        return findings

    # --- the "transaction" bodies ----------------------------------------------------

    async def _existing(self, key: str) -> tuple[MemoryDatabase, str]:
        """The database and the id of ``key``'s current session (UnknownSession if none)."""
        check_key(key)
        db = await self._enter()
        session_id = db.current.get(key)
        if session_id is None:
            raise UnknownSession(key)
        return db, session_id

    def _ensure(self, db: MemoryDatabase, key: str) -> Session:
        session_id = db.current.get(key)
        if session_id is not None:
            return db.sessions[session_id]
        now = self.clock.now()
        session = Session(id=new_id("ses"), key=key, created_at=now, updated_at=now)
        db.sessions[session.id] = session
        db.current[key] = session.id
        self._event(db, session.id, "session.created", now, detail={"key": key})
        return session

    def _update_session(self, db: MemoryDatabase, session_id: str, **changes: Any) -> Session:
        session = db.sessions[session_id]
        changed = dataclasses.replace(session, updated_at=self.clock.now(), **changes)
        db.sessions[session_id] = changed
        return changed

    def _summary(self, db: MemoryDatabase, session: Session) -> SessionSummary:
        runs = [r for r in db.runs.values() if r.session_id == session.id]
        latest = max(runs, key=lambda r: (r.created_at, r.id), default=None)
        return SessionSummary(session, latest, len(self._waiting(db, session.id)))

    @staticmethod
    def _active(db: MemoryDatabase, session_id: str) -> Run | None:
        return next(
            (r for r in db.runs.values() if r.session_id == session_id and r.status.active),
            None,
        )

    @staticmethod
    def _last_run_ended(db: MemoryDatabase, session_id: str) -> datetime | None:
        """When the session's latest run ended (runs of a session never overlap)."""
        runs = [r for r in db.runs.values() if r.session_id == session_id]
        latest = max(runs, key=lambda r: (r.created_at, r.id), default=None)
        return None if latest is None else latest.ended_at

    @staticmethod
    def _waiting(db: MemoryDatabase, session_id: str) -> list[InboundMessage]:
        found = [
            m for m in db.inbound.values()
            if m.session_id == session_id and m.fate is Fate.PENDING
        ]
        return sorted(found, key=lambda m: (m.received_at, m.id))

    def _decide(
        self, db: MemoryDatabase, message_ids: Iterable[str], fate: Fate,
        run_id: str | None = None, reason: DropReason | None = None,
    ) -> list[InboundMessage]:
        decided = []
        now = self.clock.now()
        for message_id in message_ids:
            message = db.inbound[message_id]
            if message.fate is not Fate.PENDING:
                continue
            db.inbound[message_id] = dataclasses.replace(
                message, fate=fate, run_id=run_id, reason=reason, decided_at=now
            )
            detail: dict[str, object] = {"fate": fate.value, "reason": reason and reason.value}
            if fate is Fate.DROPPED:  # which message: it is not answered, so not seen again
                detail["preview"] = message.text[:120]
            self._event(db, message.session_id, f"message.{fate}", now, run_id=run_id,
                        message_id=message_id, detail=detail)
            decided.append(db.inbound[message_id])
        return decided

    def _append(
        self, db: MemoryDatabase, session_id: str, role: Role, text: str,
        run_id: str | None = None, message_id: str | None = None, stopped: bool = False,
        covers_through: int | None = None,
    ) -> None:
        db.transcript.append(TranscriptEntry(
            seq=len(db.transcript) + 1, session_id=session_id, role=role, text=text,
            created_at=self.clock.now(), run_id=run_id, message_id=message_id,
            stopped=stopped, covers_through=covers_through,
        ))

    def _transition(
        self, db: MemoryDatabase, run: Run, status: RunStatus, **changes: Any
    ) -> Run:
        if not can_transition(run.status, status):  # what the SQL trigger refuses
            raise StoreError(f"run status may only move forward ({run.status} -> {status})")
        changed = dataclasses.replace(run, status=status, **changes)
        db.runs[run.id] = changed
        at = changed.ended_at or changed.started_at or self.clock.now()
        self._event(db, run.session_id, f"run.{status}", at, run_id=run.id, detail={
            "status": status.value, "from": run.status.value, "error": changed.error,
            "runtimeMs": changed.runtime_ms,
            "provider": changed.model.provider if changed.model else None,
            "model": changed.model.model if changed.model else None,
            "profile": changed.profile, "inputTokens": changed.usage.input_tokens,
            "outputTokens": changed.usage.output_tokens,
        })
        return changed

    def _end(self, db: MemoryDatabase, run: Run, status: RunStatus, error: str) -> Run:
        now = self.clock.now()
        ended = self._transition(
            db, run, status, ended_at=now, runtime_ms=runtime_ms(run, now), error=error
        )
        self._update_session(db, run.session_id)
        return ended

    def _stop(
        self, db: MemoryDatabase, session_id: str, status: RunStatus,
        drop_reason: DropReason | None,
    ) -> StopResult:
        dropped: list[InboundMessage] = []
        cleared: list[InboundMessage] = []
        if drop_reason is not None:
            ids = [m.id for m in self._waiting(db, session_id)]
            dropped = self._decide(db, ids, Fate.DROPPED, reason=drop_reason)
            cleared = self._settle_summaries(db, session_id, summary_cleared=drop_reason)
            if dropped:
                self._update_session(db, session_id)
        run = self._active(db, session_id)
        result = StopResult(StopOutcome.NO_RUN, None, tuple(dropped), tuple(cleared))
        if run is None:
            return result
        plan = plan_stop(run, status, self.clock.now())
        if plan.end_reason is not None:
            ended = self._end(db, run, status, plan.end_reason)
            return dataclasses.replace(result, outcome=StopOutcome.ENDED, run=ended)
        if plan.request is not None:
            run = dataclasses.replace(run, stop_requested=plan.request)
            db.runs[run.id] = run
        return dataclasses.replace(result, outcome=StopOutcome.SIGNALLED, run=run)

    def _enqueue_delivery(self, db: MemoryDatabase, run: Run, outcome: RunOutcome) -> None:
        delivery = db.sessions[run.session_id].delivery
        if delivery is None:
            return
        reply = REPLY_SEPARATOR.join(e.text for e in db.transcript
                                     if e.run_id == run.id and e.role is Role.ASSISTANT)
        text = delivery_text(outcome.status, reply, outcome.error)
        if text is None:
            return
        now = self.clock.now()
        db.outbox.append(Outbound(
            id=new_id("out"), session_id=run.session_id, run_id=run.id,
            channel=delivery.channel, target=delivery.target, text=text, created_at=now,
            next_attempt_at=now,
        ))

    @staticmethod
    def _settle(db: MemoryDatabase, outbound_id: str, **changes: Any) -> bool:
        for index, item in enumerate(db.outbox):
            if item.id == outbound_id and item.status is DeliveryStatus.PENDING:
                db.outbox[index] = dataclasses.replace(item, **changes)
                return True
        return False

    def _summarize_dropped(self, db: MemoryDatabase, session_id: str, run_id: str) -> None:
        """Tell ``run_id`` (in a note before its new messages) what the unsent summaries say."""
        unsent = self._settle_summaries(db, session_id, summarized_in=run_id)
        if unsent:
            self._append(db, session_id, Role.NOTE, summary_note([m.text for m in unsent]),
                         run_id)

    @staticmethod
    def _settle_summaries(
        db: MemoryDatabase, session_id: str, summarized_in: str | None = None,
        summary_cleared: DropReason | None = None,
    ) -> list[InboundMessage]:
        """Settle the session's unsent summaries: a run was told (``summarized_in``), or
        they were cleared (``summary_cleared``); return the messages settled, oldest first."""
        unsent = sorted((
            m for m in db.inbound.values()
            if m.session_id == session_id and m.reason is DropReason.QUEUE_FULL_SUMMARIZED
            and m.summarized_in is None and m.summary_cleared is None
        ), key=lambda m: (m.received_at, m.id))
        for message in unsent:
            db.inbound[message.id] = dataclasses.replace(
                message, summarized_in=summarized_in, summary_cleared=summary_cleared)
        return [db.inbound[m.id] for m in unsent]


def _references(db: MemoryDatabase) -> Iterator[tuple[str, str | None, Container[str]]]:
    """Every reference between records, as (table, the id it names, the ids it may name):
    what the SQL stores' foreign keys are."""
    for run in db.runs.values():
        yield "runs", run.session_id, db.sessions
    for message in db.inbound.values():
        yield "inbound", message.session_id, db.sessions
        yield "inbound", message.run_id, db.runs
    for entry in db.transcript:
        yield "transcript", entry.session_id, db.sessions
        yield "transcript", entry.run_id, db.runs
        yield "transcript", entry.message_id, db.inbound
    for item in db.outbox:
        yield "outbox", item.session_id, db.sessions
        yield "outbox", item.run_id, db.runs
    for run_id, attempts in db.attempts.items():
        yield from (("run_attempts", run_id, db.runs) for _ in attempts)
    yield from (("queue_summaries", m.summarized_in, db.runs) for m in db.inbound.values()
                if m.summarized_in is not None)


def _newest(items: list[_T], limit: int) -> list[_T]:
    """The last ``limit`` items, as SQL's ``ORDER BY ... DESC LIMIT`` gives them (0: none)."""
    return items[-limit:] if limit > 0 else []
