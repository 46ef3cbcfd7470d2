"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

Writes go through one connection on its own thread, each in ``BEGIN IMMEDIATE``; reads use
a second connection and thread, so a slow read never delays a state change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from clawgate.clock import Clock, SystemClock
from clawgate.domain import (
    STOP_STATUSES,
    Attempt,
    ContextEntry,
    Cooldown,
    Delivery,
    DropReason,
    InboundMessage,
    ModelRef,
    NewInbound,
    Outbound,
    OwnerInfo,
    QueuePatch,
    QueueSettings,
    Run,
    RunOutcome,
    RunStatus,
    Session,
    StoredEvent,
    TranscriptEntry,
    Usage,
    check_inbound,
    check_key,
)
from clawgate.errors import InvalidInput
from clawgate.store import sqlite_commands as cmd
from clawgate.store import sqlite_queries as q
from clawgate.store.protocol import (
    Acceptance,
    Claim,
    Counts,
    Deferred,
    Finding,
    ResetResult,
    SessionSummary,
    StopResult,
)
from clawgate.store.sqlite_files import create_private, make_private
from clawgate.store.sqlite_rows import ts
from clawgate.store.sqlite_schema import migrate, up_to_date
from clawgate.store.sqlite_upgrade import ProcessProbe, UpgradeGuard
from clawgate.store.sqlite_worker import ConnectionWorker
from clawgate.store.version import VersionBoard

#: How often the reader looks whether another connection committed (``poll_interval``).
WATCH_EVERY_S = 0.1
#: How long the writer waits, once writes pause, before it empties the WAL file.
TIDY_AFTER_S = 1.0


class SqliteStore:
    def __init__(
        self, path: Path, clock: Clock, writer: ConnectionWorker, reader: ConnectionWorker,
        version: VersionBoard,
    ) -> None:
        self.path = path
        self.clock = clock
        self._writer = writer
        self._reader = reader
        self._version = version

    @classmethod
    async def open(
        cls, path: Path, clock: Clock | None = None, running: ProcessProbe | None = None,
        watch_every: float = WATCH_EVERY_S, tidy_after: float = TIDY_AFTER_S,
    ) -> SqliteStore:
        """Open (creating and migrating if needed) the database at ``path``, private to us.

        An older database is upgraded only when no older clawgate is using it: ``running``
        tells whether an owner's process runs, where this machine can tell; otherwise its
        heartbeat decides. The database as it was is kept as ``<name>.bak-v<schema>``.
        A write by another process moves ``version`` within ``watch_every`` seconds. Once
        writes pause for ``tidy_after`` seconds, the WAL file is emptied.
        """
        clock = clock or SystemClock()
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)
        version = VersionBoard()
        writer = ConnectionWorker(path, "clawgate-sqlite-write", tidy_after=tidy_after)
        # The reader never writes: every commit, the writer's included, is another
        # connection's, and moves the data_version the reader watches.
        reader = ConnectionWorker(path, "clawgate-sqlite-read", watch_every, version.move)
        try:
            await writer.open()
            if not await writer.read(up_to_date):
                now = clock.now()
                await writer.write(migrate, ts(now), UpgradeGuard(path, now, running))
            await reader.open()
            version.move(await reader.data_version())
            make_private(path)
        except BaseException:
            await writer.close()
            await reader.close()
            raise
        return cls(path, clock, writer, reader, version)

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    async def version(self) -> int:
        return self._version.value

    async def changed(self, after: int, within: float) -> int:
        return await self._version.changed(after, within)

    # --- owners and leases -----------------------------------------------------------

    async def register_owner(self, owner: OwnerInfo) -> None:
        await self._writer.write(cmd.register_owner, self.clock, owner)

    async def retire_owner(self, owner_id: str) -> None:
        await self._writer.write(cmd.retire_owner, owner_id)

    async def owners_with_active_runs(self) -> list[OwnerInfo]:
        return await self._reader.read(q.owners_with_active_runs)

    async def renew_leases(
        self, owner_id: str, run_ids: frozenset[str], lease: timedelta
    ) -> frozenset[str]:
        return await self._writer.write(cmd.renew_leases, self.clock, owner_id, run_ids, lease)

    async def stop_requests(self, owner_id: str) -> dict[str, RunStatus]:
        return await self._reader.read(q.stop_requests, owner_id)

    # --- sessions --------------------------------------------------------------------

    async def ensure_session(self, key: str) -> Session:
        return await self._writer.write(cmd.ensure_session, self.clock, check_key(key))

    async def get_session(self, key: str) -> Session | None:
        return await self._reader.read(cmd.current_session, key)

    async def get_session_by_id(self, session_id: str) -> Session | None:
        return await self._reader.read(cmd.session_by_id, session_id)

    async def queue_settings(self, session_ids: frozenset[str]) -> dict[str, QueuePatch]:
        if not session_ids:
            return {}
        return await self._reader.read(q.queue_settings, session_ids)

    async def summarize_session(self, key: str) -> SessionSummary | None:
        return await self._reader.read(q.summarize_session, key)

    async def list_sessions(self, limit: int = 100) -> list[SessionSummary]:
        return await self._reader.read(q.list_sessions, limit)

    async def set_model(self, key: str, model: ModelRef | None) -> Session:
        return await self._writer.write(cmd.set_model, self.clock, check_key(key), model)

    async def set_delivery(self, key: str, delivery: Delivery) -> Session:
        return await self._writer.write(cmd.set_delivery, self.clock, check_key(key), delivery)

    async def set_queue(self, key: str, patch: QueuePatch) -> Session:
        return await self._writer.write(cmd.set_queue, self.clock, check_key(key), patch)

    async def reset_session(self, key: str) -> ResetResult:
        return await self._writer.write(cmd.reset_session, self.clock, check_key(key))

    async def archive_session(self, key: str) -> StopResult:
        return await self._writer.write(cmd.archive_session, self.clock, check_key(key))

    # --- the event feed --------------------------------------------------------------

    async def events_after(
        self, seq: int, keys: frozenset[str] | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        return await self._reader.read(q.events_after, seq, keys, limit)

    async def last_event_seq(self) -> int:
        return await self._reader.read(q.last_event_seq)

    # --- inbound ---------------------------------------------------------------------

    async def accept_inbound(
        self, key: str, message: NewInbound, defaults: QueueSettings
    ) -> Acceptance:
        return await self._writer.write(
            cmd.accept_inbound, self.clock, check_key(key), check_inbound(message), defaults
        )

    async def find_delivered(
        self, key: str, channel: str, channel_message_id: str
    ) -> InboundMessage | None:
        return await self._reader.read(cmd.delivered, key, channel, channel_message_id)

    async def get_message(self, message_id: str) -> InboundMessage | None:
        return await self._reader.read(cmd.message_by_id, message_id)

    async def drop_waiting(self, message_id: str, reason: DropReason) -> InboundMessage | None:
        return await self._writer.write(cmd.drop_waiting, self.clock, message_id, reason)

    async def list_inbound(self, session_id: str, limit: int = 100) -> list[InboundMessage]:
        return await self._reader.read(q.list_inbound, session_id, limit)

    async def run_messages(self, run_id: str) -> list[InboundMessage]:
        return await self._reader.read(q.run_messages, run_id)

    async def claimable_sessions(
        self, session_ids: frozenset[str] | None = None, limit: int = 100,
        excluding: frozenset[str] = frozenset(),
    ) -> list[str]:
        return await self._reader.read(q.claimable_sessions, session_ids, limit, excluding)

    # --- runs ------------------------------------------------------------------------

    async def claim_next(
        self, session_id: str, owner_id: str, lease: timedelta, defaults: QueueSettings
    ) -> Claim | Deferred | None:
        return await self._writer.write(
            cmd.claim_next, self.clock, session_id, owner_id, lease, defaults
        )

    async def start_run(
        self, run_id: str, owner_id: str, model: ModelRef, deadline_at: datetime
    ) -> Run | None:
        return await self._writer.write(
            cmd.start_run, self.clock, run_id, owner_id, model, deadline_at
        )

    async def take_steering(
        self, run_id: str, owner_id: str, reply_so_far: str
    ) -> list[InboundMessage] | None:
        return await self._writer.write(
            cmd.take_steering, self.clock, run_id, owner_id, reply_so_far
        )

    async def finish_run(self, run_id: str, owner_id: str, outcome: RunOutcome) -> Run | None:
        return await self._writer.write(cmd.finish_run, self.clock, run_id, owner_id, outcome)

    async def request_stop(
        self, session_id: str, status: RunStatus = RunStatus.KILLED, clear_queue: bool = True
    ) -> StopResult:
        if status not in STOP_STATUSES - {RunStatus.TIMEOUT}:
            raise InvalidInput(f"a stop ends a run killed or interrupted, not {status}")
        reason = DropReason.STOPPED if clear_queue else None
        return await self._writer.write(cmd.stop_session, self.clock, session_id, status, reason)

    async def recover_expired(self) -> list[Run]:
        # Called on every supervisor tick: look first without taking the write lock.
        if not await self._reader.read(q.any_expired, self.clock):
            return []
        return await self._writer.write(cmd.recover_expired, self.clock)

    async def recover_owner(self, owner_id: str, reason: str) -> list[Run]:
        return await self._writer.write(cmd.recover_owner, self.clock, owner_id, reason)

    async def get_run(self, run_id: str) -> Run | None:
        return await self._reader.read(cmd.run_by_id, run_id)

    async def list_runs(self, session_id: str, limit: int = 100) -> list[Run]:
        return await self._reader.read(q.list_runs, session_id, limit)

    async def active_runs(self) -> list[Run]:
        return await self._reader.read(q.active_runs)

    # --- transcript ------------------------------------------------------------------

    async def transcript(
        self, session_id: str, limit: int | None = None
    ) -> list[TranscriptEntry]:
        return await self._reader.read(q.transcript, session_id, limit)

    async def conversation(self, session_id: str, limit: int) -> list[ContextEntry]:
        return await self._reader.read(q.conversation, session_id, limit)

    async def append_summary(
        self, session_id: str, text: str, covers_through: int, usage: Usage,
        run_id: str | None = None, owner_id: str | None = None,
    ) -> bool:
        return await self._writer.write(
            cmd.append_summary, self.clock, session_id, text, covers_through, usage, run_id,
            owner_id,
        )

    async def run_reply(self, run_id: str, after_message: str | None = None) -> str:
        return await self._reader.read(q.run_reply, run_id, after_message)

    # --- outbox ----------------------------------------------------------------------

    async def take_deliveries(
        self, channel: str, lease: timedelta, limit: int = 20
    ) -> list[Outbound]:
        # Called on every supervisor tick: look first without taking the write lock.
        if not await self._reader.read(q.any_due, self.clock, channel):
            return []
        return await self._writer.write(cmd.take_deliveries, self.clock, channel, lease, limit)

    async def mark_delivered(self, outbound_id: str) -> bool:
        return await self._writer.write(cmd.mark_delivered, self.clock, outbound_id)

    async def mark_undelivered(
        self, outbound_id: str, error: str, retry_at: datetime | None
    ) -> bool:
        return await self._writer.write(cmd.mark_undelivered, outbound_id, error, retry_at)

    async def list_outbox(self, session_id: str, limit: int = 100) -> list[Outbound]:
        return await self._reader.read(q.list_outbox, session_id, limit)

    # --- model routing ---------------------------------------------------------------

    async def list_attempts(self, run_id: str) -> list[Attempt]:
        return await self._reader.read(q.list_attempts, run_id)

    async def cooldowns(self) -> list[Cooldown]:
        return await self._reader.read(q.cooldowns)

    async def record_cooldown(
        self, profile_key: str, reason: str, windows: tuple[float, ...],
        retry_after: float | None, model: str | None = None,
        key_fingerprint: str | None = None,
    ) -> Cooldown:
        return await self._writer.write(
            cmd.record_cooldown, self.clock, profile_key, reason, windows, retry_after, model,
            key_fingerprint,
        )

    async def clear_cooldown(self, profile_key: str, model: str | None = None) -> None:
        await self._writer.write(cmd.clear_cooldown, profile_key, model)

    # --- health ----------------------------------------------------------------------

    async def counts(self) -> Counts:
        return await self._reader.read(q.counts)

    async def audit(self) -> list[Finding]:
        return await self._reader.read(q.audit, self.clock)
