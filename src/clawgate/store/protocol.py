"""The store: every state change clawgate makes, as named field-level commands.

Rules every implementation follows (the conformance suite checks them):

* Each command is one transaction. Nothing is ever saved from an in-memory copy: there is no
  command that takes a ``Session`` or ``Run`` and writes it back.
* Run status moves only along ``domain.TRANSITIONS``; a command that would move it any other
  way does not apply and says so (``None``/``False``), it never overwrites.
* Writes by a run's owner are fenced: they apply only while the run is active and still owned
  by that owner, so an owner that lost its lease cannot touch the run after a takeover.
* At most one active (queued or running) run per session.
* An inbound message's fate is decided once. Transcripts are append-only.
* Time comes from the store's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from clawgate.clock import Clock
from clawgate.domain import (
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
    QueueMode,
    QueuePatch,
    QueueSettings,
    Run,
    RunOutcome,
    RunStatus,
    Session,
    StoredEvent,
    TranscriptEntry,
    Usage,
)


@dataclass(frozen=True, slots=True)
class Acceptance:
    message: InboundMessage
    session: Session
    duplicate: bool = False  # the channel delivered this message id before; nothing changed
    dropped: tuple[InboundMessage, ...] = ()  # messages the queue cap dropped (may be this one)
    active_run: Run | None = None  # the run this message waits behind, if any

    def queue_mode(self, defaults: QueueSettings) -> QueueMode:
        """The mode that decides what becomes of this message: the one the run in progress
        took its messages in (a change of mode during a reply holds from the next one), or
        with no run in progress the session's."""
        if self.active_run is not None and self.active_run.queue_mode is not None:
            return self.active_run.queue_mode
        return self.session.effective_queue(defaults).mode


@dataclass(frozen=True, slots=True)
class Claim:
    run: Run
    session: Session  # a snapshot for reading (model, queue mode); never written back
    messages: tuple[InboundMessage, ...]  # answered first, then merged
    dropped: tuple[InboundMessage, ...] = ()  # superseded (interrupt mode)


@dataclass(frozen=True, slots=True)
class Deferred:
    """Messages wait, but they arrived within the debounce time: claim again at ``until``,
    or sooner if the session's queue settings are no longer ``settings`` (the ones that set
    ``until``)."""

    until: datetime
    settings: QueueSettings


class StopOutcome(StrEnum):
    NO_RUN = "no_run"  # nothing was active
    ENDED = "ended"  # the store ended the run itself (not started yet, or its owner is gone)
    SIGNALLED = "signalled"  # the run's live owner was asked to end it


@dataclass(frozen=True, slots=True)
class StopResult:
    outcome: StopOutcome
    run: Run | None = None  # the run as it is after the command
    dropped: tuple[InboundMessage, ...] = ()  # waiting messages cleared by this stop
    #: Messages dropped earlier under ``summarize`` whose summary no run had been told yet:
    #: the stop cleared it too (it would have reached the next, unrelated, reply)
    cleared_summaries: tuple[InboundMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class ResetResult:
    old: Session
    new: Session  # ``old`` itself when it was already fresh (see ``already_fresh``)
    stop: StopResult

    @property
    def already_fresh(self) -> bool:
        """Nothing was said in the session yet, so the reset left it as it was."""
        return self.old.id == self.new.id


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session: Session
    latest_run: Run | None
    pending: int


@dataclass(frozen=True, slots=True)
class Counts:
    sessions: int  # current ones
    active_runs: int
    waiting: int  # messages with no fate yet


@dataclass(frozen=True, slots=True)
class Finding:
    """Something ``audit`` found wrong. ``fixable`` ones are mended by recovery."""

    code: str
    message: str
    fixable: bool = False
    subject: str | None = None  # the id of the run, message or session concerned


class Store(Protocol):
    clock: Clock

    async def close(self) -> None: ...

    async def version(self) -> int:
        """A number that moves when a write is committed, by this process or any other.

        A write is noticed within the store's watch interval (at once by the memory store):
        a reading taken before some queries that is still current afterwards means nothing
        written since escaped them (a reading that moved may be spurious). It costs no
        query, so what looks for other processes' work compares it with the reading it last
        looked at, and skips its queries while it has not moved.
        """
        ...

    async def changed(self, after: int, within: float) -> int:
        """The version once it is not ``after`` (at once, if it is not now), or ``after``
        when ``within`` seconds pass first: an idle poller waits here instead of polling."""
        ...

    # --- owners and leases ------------------------------------------------------------

    async def register_owner(self, owner: OwnerInfo) -> None: ...

    async def retire_owner(self, owner_id: str) -> None:
        """Forget an owner that exits cleanly (after its runs have ended)."""
        ...

    async def owners_with_active_runs(self) -> list[OwnerInfo]: ...

    async def renew_leases(
        self, owner_id: str, run_ids: frozenset[str], lease: timedelta
    ) -> frozenset[str]:
        """Extend the leases of these runs where still active and owned by ``owner_id``.

        Only runs the owner is working on are named, so a run it lost track of expires and
        is recovered. Returns the runs whose lease was extended.
        """
        ...

    async def stop_requests(self, owner_id: str) -> dict[str, RunStatus]:
        """Active runs of ``owner_id`` that someone asked to stop, with the asked status."""
        ...

    # --- sessions ---------------------------------------------------------------------

    async def ensure_session(self, key: str) -> Session: ...

    async def get_session(self, key: str) -> Session | None: ...

    async def get_session_by_id(self, session_id: str) -> Session | None: ...

    async def queue_settings(self, session_ids: frozenset[str]) -> dict[str, QueuePatch]:
        """The queue settings of these sessions (their own, as ``Session.queue``), in one
        read however many: what a process checks for every session it keeps waiting out a
        quiet time. A session that is archived, or unknown, is left out."""
        ...

    async def summarize_session(self, key: str) -> SessionSummary | None: ...

    async def list_sessions(self, limit: int = 100) -> list[SessionSummary]:
        """Current sessions, most recently updated first."""
        ...

    async def set_model(self, key: str, model: ModelRef | None) -> Session: ...

    async def set_queue(self, key: str, patch: QueuePatch) -> Session: ...

    async def set_delivery(self, key: str, delivery: Delivery) -> Session: ...

    async def reset_session(self, key: str) -> ResetResult:
        """Archive the key's session (kept, with its transcript) and open a fresh one.

        Waiting messages are dropped (``reset``); an active run is stopped (``killed``).
        Raises UnknownSession.
        """
        ...

    async def archive_session(self, key: str) -> StopResult:
        """Retire the key's session (what ``delete`` means: what was said is kept).

        Like reset, but no fresh session is opened: the key is free until used again.
        Raises UnknownSession.
        """
        ...

    # --- the event feed -----------------------------------------------------------------

    async def events_after(
        self, seq: int, keys: frozenset[str] | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        """Events with a seq above ``seq`` (of these session keys, or all), oldest first."""
        ...

    async def last_event_seq(self) -> int: ...

    # --- inbound messages -------------------------------------------------------------

    async def accept_inbound(
        self, key: str, message: NewInbound, defaults: QueueSettings
    ) -> Acceptance:
        """Persist a message (creating the session if needed), applying the queue cap.

        A repeat of a channel message id on the same channel and key returns the first
        record with ``duplicate=True`` and changes nothing; the same id on another key is
        another message.
        """
        ...

    async def find_delivered(
        self, key: str, channel: str, channel_message_id: str
    ) -> InboundMessage | None:
        """The message ``channel`` delivered to conversation ``key`` under that id, if any:
        what ``accept_inbound`` would answer a repeat with (in any session the key had)."""
        ...

    async def get_message(self, message_id: str) -> InboundMessage | None: ...

    async def drop_waiting(self, message_id: str, reason: DropReason) -> InboundMessage | None:
        """Drop one message that still waits (its sender no longer wants an answer); the
        message as dropped, or None when it no longer waited (or there is no such message)
        and nothing changed."""
        ...

    async def list_inbound(self, session_id: str, limit: int = 100) -> list[InboundMessage]:
        """The latest ``limit`` messages of a session, oldest first."""
        ...

    async def run_messages(self, run_id: str) -> list[InboundMessage]:
        """The messages a run took (the one it answers, and those collected or steered into
        it), oldest first."""
        ...

    async def claimable_sessions(
        self, session_ids: frozenset[str] | None = None, limit: int = 100,
        excluding: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Sessions with waiting messages and no active run (optionally among some), but
        those in ``excluding`` (what the asker serves already: at most ``limit`` are listed,
        so they would hide the rest)."""
        ...

    # --- runs -------------------------------------------------------------------------

    async def claim_next(
        self, session_id: str, owner_id: str, lease: timedelta, defaults: QueueSettings
    ) -> Claim | Deferred | None:
        """Open a queued run for the session's waiting messages, as the queue mode says.

        None when the session has an active run or nothing is waiting. Deferred while
        messages that queued behind a run (the oldest arrived before the session's latest
        run ended) are within the debounce time of the newest (``domain.debounce_until``):
        the rule reads only stored times, so every process claiming the session applies it.
        """
        ...

    async def start_run(
        self, run_id: str, owner_id: str, model: ModelRef, deadline_at: datetime
    ) -> Run | None:
        """queued -> running. None when it did not apply (stopped, recovered, not owner)."""
        ...

    async def take_steering(
        self, run_id: str, owner_id: str, reply_so_far: str
    ) -> list[InboundMessage] | None:
        """Fold waiting messages into the running run, if it took its own messages in steer
        mode (``Run.queue_mode``: the session's mode now does not matter).

        Appends ``reply_so_far`` (if any messages are taken) and the messages to the
        transcript. Returns the messages taken, or None when the run is no longer ours.
        """
        ...

    async def finish_run(self, run_id: str, owner_id: str, outcome: RunOutcome) -> Run | None:
        """End a run: status, times, usage and the reply, in one transaction.

        ``outcome.usage`` is everything the run spent, its summaries' calls included; what
        ``append_summary`` recorded already is not counted again. None when it did not apply
        (already ended or no longer ours); nothing is written.
        """
        ...

    async def request_stop(
        self,
        session_id: str,
        status: RunStatus = RunStatus.KILLED,
        clear_queue: bool = True,
    ) -> StopResult:
        """Stop the session's active run; works in every state.

        A queued run, or one whose owner's lease expired, is ended here with ``status``;
        a running run with a live owner is flagged for its owner. With ``clear_queue``,
        waiting messages are dropped (``stopped``).
        """
        ...

    async def recover_expired(self) -> list[Run]:
        """End every active run whose lease has expired as ``interrupted``."""
        ...

    async def recover_owner(self, owner_id: str, reason: str) -> list[Run]:
        """End every active run of an owner known to be dead as ``interrupted``."""
        ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(self, session_id: str, limit: int = 100) -> list[Run]:
        """The latest ``limit`` runs of a session, oldest first."""
        ...

    async def active_runs(self) -> list[Run]: ...

    # --- transcript -------------------------------------------------------------------

    async def transcript(
        self, session_id: str, limit: int | None = None
    ) -> list[TranscriptEntry]:
        """The session's transcript (the last ``limit`` entries), oldest first."""
        ...

    async def conversation(self, session_id: str, limit: int) -> list[ContextEntry]:
        """What a model is shown: the latest summary (if any), then the entries it does
        not cover, at most ``limit`` of them, oldest first."""
        ...

    async def append_summary(
        self, session_id: str, text: str, covers_through: int, usage: Usage,
        run_id: str | None = None, owner_id: str | None = None,
    ) -> bool:
        """Record a compaction summary standing for entries up to ``covers_through``.

        The usage is added to the session, and inside a run (``run_id`` and ``owner_id``) to
        the run as well, in the same transaction, so a run that never finishes still shows
        it. Inside a run it is fenced like every run write: False when the run is no longer
        ours.
        """
        ...

    async def run_reply(self, run_id: str, after_message: str | None = None) -> str:
        """The assistant text a run produced (all its segments, joined by
        ``REPLY_SEPARATOR``); with ``after_message``, only the segments written after that
        message was handed to the run (a steered message's own answer)."""
        ...

    # --- outbox ---------------------------------------------------------------------
    # finish_run writes a reply to the outbox, in its own transaction, when the session has a
    # delivery target (set by accept_inbound from a message's ``reply_to``).

    async def take_deliveries(
        self, channel: str, lease: timedelta, limit: int = 20
    ) -> list[Outbound]:
        """Claim due replies for a channel, oldest first, at most one per target at a time.

        A claim pushes the next attempt ``lease`` ahead and counts the attempt, so a sender
        that dies mid-send leaves the reply to be retried by anyone (at-least-once).
        """
        ...

    async def mark_delivered(self, outbound_id: str) -> bool: ...

    async def mark_undelivered(
        self, outbound_id: str, error: str, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt; retry at ``retry_at``, or never (rejected) when None."""
        ...

    async def list_outbox(self, session_id: str, limit: int = 100) -> list[Outbound]: ...

    # --- model routing --------------------------------------------------------------

    async def list_attempts(self, run_id: str) -> list[Attempt]:
        """The candidates a run tried, in order (finish_run records them)."""
        ...

    async def cooldowns(self) -> list[Cooldown]:
        """Every rest recorded, whole keys and single models (ended ones included)."""
        ...

    async def record_cooldown(
        self, profile_key: str, reason: str, windows: tuple[float, ...],
        retry_after: float | None, model: str | None = None,
        key_fingerprint: str | None = None,
    ) -> Cooldown:
        """Count one more failure in a row and rest the profile (only ``model`` on it, when
        given) for the next window. The rest is the key's with ``key_fingerprint``; the
        failures of another key are not counted on (a new key starts at one)."""
        ...

    async def clear_cooldown(self, profile_key: str, model: str | None = None) -> None:
        """The profile answered (with ``model``): the key's failures and that model's are
        forgiven; other models resting on the key keep resting."""
        ...

    # --- health -----------------------------------------------------------------------

    async def counts(self) -> Counts:
        """A few totals, each from an index (cheap enough for every metrics scrape)."""
        ...

    async def audit(self) -> list[Finding]:
        """Check every promise against what is stored."""
        ...
