"""What ``audit`` reports, worded once for every store.

Each store finds the rows that break a promise in its own way (SQL, or a look at its dicts);
the findings say what is wrong in the same words, so ``clawgate doctor`` reads alike
whatever the store. The checks only a database file can fail (integrity of its pages, its
guards, its transition table) live with the SQLite store.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from clawgate.domain import Fate, InboundMessage, Run, RunStatus
from clawgate.store.protocol import Finding

#: How long a run may go on past its deadline before audit blames its owner: the owner
#: enforces deadlines on its supervisor's tick, and ending a run takes a moment.
DEADLINE_GRACE = timedelta(minutes=1)


def _when(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


# --- when a run or message breaks a promise (the memory store's reading; SQL says the same)


def is_contradictory(run: Run) -> bool:
    """Active with an end, or finished without its end time or runtime."""
    if run.status.active:
        return run.ended_at is not None
    return run.ended_at is None or run.runtime_ms is None


def overdue_deadline(run: Run, now: datetime) -> datetime | None:
    """The deadline a run goes on running well past while its owner still renews the
    lease (an owner that stopped renewing has orphaned the run instead); None if none."""
    deadline = run.deadline_at
    if run.status is not RunStatus.RUNNING or deadline is None:
        return None
    overdue = deadline < now - DEADLINE_GRACE and run.lease_expires_at >= now
    return deadline if overdue else None


def is_unexplained(message: InboundMessage) -> bool:
    """Answered or merged without the run that took it, or dropped without a reason."""
    if message.fate in (Fate.ANSWERED, Fate.MERGED):
        return message.run_id is None
    return message.fate is Fate.DROPPED and message.reason is None


# --- the findings -----------------------------------------------------------------------


def orphaned_run(run_id: str, session_key: str, owner_id: str, lease: datetime) -> Finding:
    return Finding(
        "orphaned_run",
        f"run {run_id} in session {session_key!r} is active but its owner {owner_id} "
        f"stopped renewing its lease at {_when(lease)}",
        fixable=True,
        subject=run_id,
    )


def past_deadline(run_id: str, deadline: datetime) -> Finding:
    return Finding("past_deadline", f"run {run_id} is still running a minute after its "
                                    f"deadline ({_when(deadline)}); its owner is not enforcing it",
                   subject=run_id)


def contradictory_run(run_id: str, status: str) -> Finding:
    return Finding("contradictory_run",
                   f"run {run_id} is {status} but its end time says otherwise", subject=run_id)


def several_active_runs(session_id: str, count: int) -> Finding:
    return Finding("several_active_runs", f"session {session_id} has {count} active runs",
                   subject=session_id)


def unexplained_fate(message_id: str, fate: str) -> Finding:
    return Finding("unexplained_fate", f"message {message_id} is {fate} without a run or reason",
                   subject=message_id)


def waiting_in_archived(message_id: str) -> Finding:
    return Finding("waiting_in_archived", f"message {message_id} waits in an archived session",
                   subject=message_id)


def summary_undeliverable(message_id: str) -> Finding:
    return Finding("summary_undeliverable",
                   f"message {message_id} was dropped from a full queue and its summary waits "
                   "for the next reply of an archived session, which will never come",
                   subject=message_id)


def dangling_references(count: int, tables: Iterable[str]) -> Finding:
    return Finding("foreign_keys",
                   f"{count} rows point at missing rows in {', '.join(sorted(set(tables)))}")
