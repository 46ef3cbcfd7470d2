"""Turning SQLite rows into domain records and back. Column lists live next to their readers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clawgate.domain import (
    Delivery,
    DeliveryStatus,
    DropPolicy,
    DropReason,
    Fate,
    InboundMessage,
    ModelRef,
    Outbound,
    OwnerInfo,
    QueueMode,
    QueuePatch,
    Role,
    Run,
    RunStatus,
    Session,
    TranscriptEntry,
    Usage,
)

#: A row as the sqlite3 module returns it: its values are whatever the column holds.
Row = tuple[Any, ...]


def ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def opt_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def opt_model(provider: str | None, model: str | None) -> ModelRef | None:
    return None if provider is None or model is None else ModelRef(provider, model)


SESSION_COLUMNS = (
    "id, key, created_at, updated_at, archived_at, model, queue_mode, debounce_ms, queue_cap,"
    " drop_policy, input_tokens, output_tokens, delivery_channel, delivery_target, cached_tokens"
)


#: A session's own queue settings (NULL: the default holds), in ``queue_from``'s order.
QUEUE_COLUMNS = "queue_mode, debounce_ms, queue_cap, drop_policy"


def queue_from(row: Row) -> QueuePatch:
    mode, debounce, cap, drop = row
    return QueuePatch(
        mode=None if mode is None else QueueMode(mode),
        debounce_ms=debounce,
        cap=cap,
        drop=None if drop is None else DropPolicy(drop),
    )


def session_from(row: Row) -> Session:
    (sid, key, created, updated, archived, model, mode, debounce, cap, drop, tin, tout,
     channel, target, cached) = row
    return Session(
        id=sid,
        key=key,
        created_at=dt(created),
        updated_at=dt(updated),
        archived_at=opt_dt(archived),
        model=None if model is None else ModelRef(*model.split("/", 1)),  # checked when set
        queue=queue_from((mode, debounce, cap, drop)),
        usage=Usage(tin, tout, cached),
        delivery=None if channel is None else Delivery(channel, target),
    )


RUN_COLUMNS = (
    "id, session_id, status, created_at, owner_id, lease_expires_at, started_at, ended_at,"
    " runtime_ms, provider, model, deadline_at, stop_requested, input_tokens, output_tokens,"
    " error, profile, cached_tokens, queue_mode"
)


def run_from(row: Row) -> Run:
    (rid, sid, status, created, owner, lease, started, ended, runtime, provider, model,
     deadline, stop, tin, tout, error, profile, cached, queue_mode) = row
    return Run(
        id=rid,
        session_id=sid,
        status=RunStatus(status),
        created_at=dt(created),
        owner_id=owner,
        lease_expires_at=dt(lease),
        started_at=opt_dt(started),
        ended_at=opt_dt(ended),
        runtime_ms=runtime,
        model=opt_model(provider, model),
        deadline_at=opt_dt(deadline),
        stop_requested=None if stop is None else RunStatus(stop),
        usage=Usage(tin, tout, cached),
        error=error,
        profile=profile,
        queue_mode=None if queue_mode is None else QueueMode(queue_mode),
    )


#: Read ``FROM inbound`` (unaliased): with what became of a summarized message's summary.
INBOUND_COLUMNS = (
    "id, session_id, channel, text, received_at, channel_message_id, sender, fate, reason,"
    " run_id, decided_at,"
    " (SELECT q.run_id FROM queue_summaries q WHERE q.message_id = inbound.id),"
    " (SELECT q.cleared FROM queue_summaries q WHERE q.message_id = inbound.id)"
)


def inbound_from(row: Row) -> InboundMessage:
    (mid, sid, channel, text, received, cmid, sender, fate, reason, run_id, decided,
     summarized_in, cleared) = row
    return InboundMessage(
        id=mid,
        session_id=sid,
        channel=channel,
        text=text,
        received_at=dt(received),
        channel_message_id=cmid,
        sender=sender,
        fate=Fate(fate),
        reason=None if reason is None else DropReason(reason),
        run_id=run_id,
        decided_at=opt_dt(decided),
        summarized_in=summarized_in,
        summary_cleared=None if cleared is None else DropReason(cleared),
    )


TRANSCRIPT_COLUMNS = (
    "seq, session_id, role, text, created_at, run_id, message_id, stopped, covers_through"
)


def transcript_from(row: Row) -> TranscriptEntry:
    (seq, sid, role, text, created, run_id, message_id, stopped, covers) = row
    return TranscriptEntry(
        seq=seq,
        session_id=sid,
        role=Role(role),
        text=text,
        created_at=dt(created),
        run_id=run_id,
        message_id=message_id,
        stopped=bool(stopped),
        covers_through=covers,
    )


OWNER_COLUMNS = "id, host, pid, boot_id, process_start, started_at"


def owner_from(row: Row) -> OwnerInfo:
    (oid, host, pid, boot_id, process_start, started) = row
    return OwnerInfo(
        id=oid,
        host=host,
        pid=pid,
        boot_id=boot_id,
        process_start=process_start,
        started_at=dt(started),
    )


OUTBOX_COLUMNS = (
    "id, session_id, run_id, channel, target, text, created_at, next_attempt_at, status,"
    " attempts, last_error, delivered_at"
)


def outbound_from(row: Row) -> Outbound:
    (oid, sid, run_id, channel, target, text, created, next_at, status, attempts, error,
     delivered) = row
    return Outbound(
        id=oid, session_id=sid, run_id=run_id, channel=channel, target=target, text=text,
        created_at=dt(created), next_attempt_at=dt(next_at), status=DeliveryStatus(status),
        attempts=attempts, last_error=error, delivered_at=opt_dt(delivered),
    )
