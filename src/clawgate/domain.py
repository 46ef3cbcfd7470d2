"""Sessions, runs, inbound messages and the rules that relate them.

Pure: no I/O, no clock reads. Every store and the runtime share these types and the
planning functions at the bottom, so the in-memory store cannot drift from the SQL ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from clawgate.errors import CoolingDown, InvalidInput, NotConfigured

# --- run status and its transition table ---------------------------------------------


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def terminal(self) -> bool:
        return not self.active


ACTIVE_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(RunStatus) - ACTIVE_STATUSES

#: The only moves a run may make. A terminal status has no way out.
TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.KILLED, RunStatus.INTERRUPTED}
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.DONE,
            RunStatus.FAILED,
            RunStatus.KILLED,
            RunStatus.TIMEOUT,
            RunStatus.INTERRUPTED,
        }
    ),
    **{status: frozenset() for status in TERMINAL_STATUSES},
}

#: Statuses a stop request may ask for (user stop, interrupt mode, timeout).
STOP_STATUSES: frozenset[RunStatus] = frozenset(
    {RunStatus.KILLED, RunStatus.INTERRUPTED, RunStatus.TIMEOUT}
)


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in TRANSITIONS[current]


def allowed_from(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which ``target`` may be reached (the guard of an UPDATE)."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


#: Why the store itself ended a run (its owner did not). A reason says why; the status says
#: what, so no reason starts with its status ("ended interrupted: interrupted: ...").
ENDED_LEASE_EXPIRED = "its owner stopped renewing the lease (crashed or stalled)"
ENDED_BEFORE_START = "stopped before it started"
ENDED_OWNER_GONE = "stopped; its owner had stopped renewing the lease"


# --- inbound message fates -------------------------------------------------------------


class Fate(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"  # opened a run; the run's reply answers it
    MERGED = "merged"  # folded into another message's run (collect, steer)
    DROPPED = "dropped"  # never sent to a model; ``reason`` says why


class DropReason(StrEnum):
    QUEUE_FULL_OLDEST = "queue_full_oldest"
    QUEUE_FULL_NEWEST = "queue_full_newest"
    QUEUE_FULL_SUMMARIZED = "queue_full_summarized"
    STOPPED = "stopped"
    RESET = "reset"
    SUPERSEDED = "superseded"

    @property
    def describe(self) -> str:
        return _DROP_DESCRIPTIONS[self]


_DROP_DESCRIPTIONS: Mapping[DropReason, str] = {
    DropReason.QUEUE_FULL_OLDEST: "queue full: the oldest waiting message was dropped",
    DropReason.QUEUE_FULL_NEWEST: "queue full: the new message was dropped",
    DropReason.QUEUE_FULL_SUMMARIZED: "queue full: dropped, a summary goes to the next turn",
    # A stop clears waiting messages; a streaming HTTP client that leaves withdraws its own.
    DropReason.STOPPED: "cleared by stop, or withdrawn when its sender left",
    DropReason.RESET: "cleared when the session was reset or deleted",
    DropReason.SUPERSEDED: "superseded by a newer message (interrupt mode)",
}
#: What cleared the summary of a message dropped under ``summarize`` before a run was told.
_CLEARED: Mapping[DropReason, str] = {
    DropReason.STOPPED: "cleared by stop before any reply was told",
    DropReason.RESET: "cleared when the session was reset or deleted",
}


# --- queue policy ---------------------------------------------------------------------


class QueueMode(StrEnum):
    FOLLOWUP = "followup"  # each waiting message gets its own turn, in order
    COLLECT = "collect"  # waiting messages are coalesced into one turn
    STEER = "steer"  # handed to the active run at its next model call
    INTERRUPT = "interrupt"  # stop the active run, answer the newest message


class DropPolicy(StrEnum):
    OLD = "old"
    NEW = "new"
    SUMMARIZE = "summarize"


MAX_QUEUE_CAP = 1000
MAX_DEBOUNCE_MS = 600_000


@dataclass(frozen=True, slots=True)
class QueueSettings:
    mode: QueueMode = QueueMode.COLLECT
    debounce_ms: int = 1000
    cap: int = 20
    drop: DropPolicy = DropPolicy.SUMMARIZE

    def __post_init__(self) -> None:
        if not 0 <= self.debounce_ms <= MAX_DEBOUNCE_MS:
            raise ValueError(f"debounce must be 0..{MAX_DEBOUNCE_MS} ms, got {self.debounce_ms}")
        if not 1 <= self.cap <= MAX_QUEUE_CAP:
            raise ValueError(f"queue cap must be 1..{MAX_QUEUE_CAP}, got {self.cap}")


@dataclass(frozen=True, slots=True)
class QueuePatch:
    """A field-level change to a session's queue settings; ``None`` leaves a field alone."""

    mode: QueueMode | None = None
    debounce_ms: int | None = None
    cap: int | None = None
    drop: DropPolicy | None = None


# --- models ---------------------------------------------------------------------------

MAX_MODEL_REF_CHARS = 200  # provider/model; the longest real names are under 100


@dataclass(frozen=True, slots=True, order=True)
class ModelRef:
    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        shown = text if len(text) <= 80 else text[:80] + "..."
        provider, sep, model = text.strip().partition("/")
        if not sep or not provider or not model:
            raise ValueError(f"a model reference looks like provider/model, got {shown!r}")
        if len(text) > MAX_MODEL_REF_CHARS or not text.isprintable() or " " in text.strip():
            raise ValueError(f"a model name is at most {MAX_MODEL_REF_CHARS} printable "
                             f"characters without spaces, got {shown!r}")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


# --- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0  # the whole input, whether or not the provider cached it
    output_tokens: int = 0
    cached_tokens: int = 0  # of the input, how many the provider served from its cache

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def beyond(self, recorded: Usage) -> Usage:
        """What this total adds to what was ``recorded`` already (never less than nothing)."""
        return Usage(
            max(0, self.input_tokens - recorded.input_tokens),
            max(0, self.output_tokens - recorded.output_tokens),
            max(0, self.cached_tokens - recorded.cached_tokens),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one candidate (model and auth profile) during a run."""

    model: ModelRef
    profile: str
    outcome: str  # "answered", or the ProviderError kind that made us move on
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Cooldown:
    """An auth profile resting after failures; ``failures`` grows the next window.

    A refused key or a billing problem rests the whole key (``model`` is None); a rate limit
    or an overload rests only the model that met it, since providers limit each model apart.
    A rest belongs to the key that met it (``key_fingerprint``): once the profile's key is
    changed, it no longer applies.
    """

    profile_key: str  # "provider:profile"
    until: datetime
    failures: int
    reason: str
    model: str | None = None  # the model's name at its provider; None: every model
    #: A short, non-reversible fingerprint of the key that failed (``key_fingerprint``);
    #: None when unknown (no key, or a rest recorded before rests were per key)
    key_fingerprint: str | None = None

    def holds_for(self, fingerprint: str | None) -> bool:
        """Whether the rest applies to the profile, whose key now has ``fingerprint``."""
        return same_key(self.key_fingerprint, fingerprint)

    @property
    def label(self) -> str:
        """What rests, for people: ``openai:work``, or ``gpt-4o on openai:work``."""
        return self.profile_key if self.model is None else f"{self.model} on {self.profile_key}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a session's replies go when its channel pushes them (a chat id, say)."""

    channel: str
    target: str


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    key: str
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    model: ModelRef | None = None  # the session's own choice; None means the default
    queue: QueuePatch = field(default_factory=QueuePatch)  # overrides of the defaults
    usage: Usage = field(default_factory=Usage)
    delivery: Delivery | None = None

    def effective_queue(self, defaults: QueueSettings) -> QueueSettings:
        return merge_queue(defaults, self.queue)


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    session_id: str
    status: RunStatus
    created_at: datetime
    owner_id: str
    lease_expires_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    runtime_ms: int | None = None
    model: ModelRef | None = None
    deadline_at: datetime | None = None
    stop_requested: RunStatus | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    profile: str | None = None  # the auth profile that answered
    #: The queue mode in force when the run took its messages: it decides what becomes of
    #: messages sent during the run (None: a run recorded before runs kept it)
    queue_mode: QueueMode | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    id: str
    session_id: str
    channel: str
    text: str
    received_at: datetime
    channel_message_id: str | None = None
    sender: str | None = None
    fate: Fate = Fate.PENDING
    reason: DropReason | None = None
    run_id: str | None = None
    decided_at: datetime | None = None
    #: Dropped under ``summarize``: the run told what it said (the next run to answer, or
    #: the run the rest were steered into) ...
    summarized_in: str | None = None
    #: ... or why no run will be: stop (STOPPED) or a reset (RESET) cleared the summary first
    summary_cleared: DropReason | None = None

    @property
    def why_dropped(self) -> str:
        """Why the message was dropped, in words, and for a summarized one what became of
        its summary; "dropped" when it was not."""
        if self.reason is not DropReason.QUEUE_FULL_SUMMARIZED:
            return self.reason.describe if self.reason else "dropped"
        if self.summarized_in is not None:
            return f"queue full: dropped; run {self.summarized_in} was told what it said"
        if self.summary_cleared is not None:
            return f"queue full: dropped; its summary was {_CLEARED[self.summary_cleared]}"
        return self.reason.describe


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    NOTE = "note"  # written by clawgate itself, e.g. a summary of dropped messages


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    seq: int
    session_id: str
    role: Role
    text: str
    created_at: datetime
    run_id: str | None = None
    message_id: str | None = None
    stopped: bool = False  # an assistant reply cut short by stop, timeout or failure
    covers_through: int | None = None  # a summary: it stands for entries up to this seq


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """A transcript entry as a model is shown it."""

    seq: int
    role: Role
    text: str
    summary: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the event feed: what happened to a run, a message or a session."""

    seq: int
    at: datetime
    session_id: str
    session_key: str
    kind: str  # "run.running", "message.dropped", "session.model", ...
    run_id: str | None = None
    message_id: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewInbound:
    """A message as a channel hands it over, before it is persisted.

    ``reply_to`` is where this channel pushes replies (a chat id, say); giving it makes it
    the session's delivery target, in the same transaction that stores the message.
    """

    channel: str
    text: str
    channel_message_id: str | None = None
    sender: str | None = None
    reply_to: str | None = None


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"  # the channel refused it for good (e.g. the chat is gone)


@dataclass(frozen=True, slots=True)
class Outbound:
    """A reply waiting in the outbox for a channel that pushes."""

    id: str
    session_id: str
    run_id: str
    channel: str
    target: str
    text: str
    created_at: datetime
    next_attempt_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """Who holds runs: one per runtime process. Used to tell a dead owner quickly."""

    id: str
    host: str
    pid: int
    boot_id: str
    process_start: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended, as its owner reports it."""

    status: RunStatus
    reply: str = ""
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    model: ModelRef | None = None  # the model that answered (None: the one it started with)
    profile: str | None = None
    attempts: tuple[Attempt, ...] = ()

    def __post_init__(self) -> None:
        if not self.status.terminal:
            raise ValueError(f"a run outcome needs a terminal status, got {self.status}")

    def with_trail(self, trail: Sequence[Attempt], usage: Usage) -> RunOutcome:
        """This outcome with the candidates tried and every token they cost. The run names
        the candidate last in use: the last that answered or was cut short by the run's end,
        else the last one called."""
        named = in_use(trail)
        model, profile = (named.model, named.profile) if named else (self.model, self.profile)
        return dataclasses.replace(self, model=model, profile=profile, attempts=tuple(trail),
                                   usage=usage)


#: Attempts that never reached the provider.
SKIPPED_OUTCOMES = frozenset({CoolingDown.kind, NotConfigured.kind})


_CUT_SHORT: Mapping[RunStatus, str] = {
    RunStatus.KILLED: "stopped", RunStatus.TIMEOUT: "run_timeout",
    RunStatus.INTERRUPTED: "interrupted", RunStatus.FAILED: "failed",
}
#: Attempts ended by their run's end (a stop, the run timeout, ...), not by the provider.
CUT_SHORT_OUTCOMES = frozenset(_CUT_SHORT.values())


def cut_short(status: RunStatus) -> str:
    """The outcome of an attempt still streaming when its run ended with ``status``."""
    return _CUT_SHORT.get(status, str(status))


def in_use(trail: Sequence[Attempt]) -> Attempt | None:
    """The attempt a run names: the last that answered or was cut short, else the last that
    reached the provider, else the last skipped."""
    called = [a for a in trail if a.outcome not in SKIPPED_OUTCOMES]
    streaming = [a for a in called
                 if a.outcome == "answered" or a.outcome in CUT_SHORT_OUTCOMES]
    for found in (streaming, called, trail):
        if found:
            return found[-1]
    return None


# --- pure planning shared by every store ----------------------------------------------

MAX_MESSAGE_CHARS = 32_000
MAX_KEY_CHARS = 128
MAX_CHANNEL_CHARS = 64
MAX_CHANNEL_MESSAGE_ID_CHARS = 256
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@+-/")


def check_key(key: object) -> str:
    """A session key: 1 to 128 of letters, digits and ``. _ : @ + - /``."""
    if not isinstance(key, str):
        raise InvalidInput(f"a session key is text, got {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidInput(f"a session key has 1 to {MAX_KEY_CHARS} characters, got {len(key)}")
    bad = sorted(set(key) - _KEY_CHARS)
    if bad:
        raise InvalidInput(
            f"session key {key!r} has characters that are not allowed: {''.join(bad)!r} "
            "(use letters, digits and . _ : @ + - /)"
        )
    return key


def check_inbound(message: NewInbound) -> NewInbound:
    """Refuse a message no model should see; say exactly what is wrong."""
    if not isinstance(message.text, str):
        raise InvalidInput(f"a message is text, got {type(message.text).__name__}")
    if not message.text.strip():
        raise InvalidInput("the message is empty")
    if len(message.text) > MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"the message has {len(message.text)} characters; the limit is {MAX_MESSAGE_CHARS}"
        )
    if "\x00" in message.text:
        raise InvalidInput("the message contains a NUL character")
    if not isinstance(message.channel, str) or not 1 <= len(message.channel) <= MAX_CHANNEL_CHARS:
        raise InvalidInput(f"a channel name has 1 to {MAX_CHANNEL_CHARS} characters")
    if message.reply_to is not None and (
        not isinstance(message.reply_to, str) or not 1 <= len(message.reply_to) <= 256
    ):
        raise InvalidInput("a reply target is text of 1 to 256 characters")
    cmid = message.channel_message_id
    if cmid is not None and (
        not isinstance(cmid, str) or not 1 <= len(cmid) <= MAX_CHANNEL_MESSAGE_ID_CHARS
    ):
        raise InvalidInput(
            f"a channel message id is text of 1 to {MAX_CHANNEL_MESSAGE_ID_CHARS} characters"
        )
    for name, value in (("message", message.text), ("channel name", message.channel),
                        ("channel message id", message.channel_message_id),
                        ("sender", message.sender), ("reply target", message.reply_to)):
        check_unicode(name, value)
    return message


def check_unicode(name: str, value: object) -> None:
    """Text that cannot be stored: a lone surrogate (JSON may carry one, escaped as
    ``\\ud800``, but it is not a character and UTF-8 cannot encode it)."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(
                f"the {name} is not valid Unicode: a lone surrogate "
                f"({value[exc.start]!r}) at position {exc.start}") from None


def merge_queue(defaults: QueueSettings, patch: QueuePatch) -> QueueSettings:
    return QueueSettings(
        mode=patch.mode or defaults.mode,
        debounce_ms=defaults.debounce_ms if patch.debounce_ms is None else patch.debounce_ms,
        cap=defaults.cap if patch.cap is None else patch.cap,
        drop=patch.drop or defaults.drop,
    )


def merge_patch(current: QueuePatch, change: QueuePatch) -> QueuePatch:
    return QueuePatch(
        mode=change.mode or current.mode,
        debounce_ms=current.debounce_ms if change.debounce_ms is None else change.debounce_ms,
        cap=current.cap if change.cap is None else change.cap,
        drop=change.drop or current.drop,
    )


@dataclass(frozen=True, slots=True)
class OverflowPlan:
    drop_oldest: int = 0
    drop_new: bool = False
    reason: DropReason | None = None


def plan_overflow(pending: int, settings: QueueSettings) -> OverflowPlan:
    """What to drop when one more message arrives and ``pending`` are already waiting.

    In interrupt mode the newest message is the one answered, so the oldest waiting ones
    make room, superseded, whatever the drop policy.
    """
    if pending < settings.cap:
        return OverflowPlan()
    if settings.mode is QueueMode.INTERRUPT:
        return OverflowPlan(drop_oldest=pending - settings.cap + 1,
                            reason=DropReason.SUPERSEDED)
    if settings.drop is DropPolicy.NEW:
        return OverflowPlan(drop_new=True, reason=DropReason.QUEUE_FULL_NEWEST)
    reason = (
        DropReason.QUEUE_FULL_SUMMARIZED
        if settings.drop is DropPolicy.SUMMARIZE
        else DropReason.QUEUE_FULL_OLDEST
    )
    return OverflowPlan(drop_oldest=pending - settings.cap + 1, reason=reason)


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    answered: str
    merged: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def plan_claim(mode: QueueMode, pending: Sequence[str]) -> ClaimPlan:
    """Which waiting messages (oldest first) a new run takes, and how."""
    if not pending:
        raise ValueError("nothing to claim")
    if mode is QueueMode.COLLECT:
        return ClaimPlan(answered=pending[0], merged=tuple(pending[1:]))
    if mode is QueueMode.INTERRUPT:
        return ClaimPlan(answered=pending[-1], dropped=tuple(pending[:-1]))
    return ClaimPlan(answered=pending[0])


def replaces_stop(current: RunStatus | None, wanted: RunStatus) -> bool:
    """Whether a stop asking for ``wanted`` replaces the one a run was already asked for
    (``current``; None: none yet). The first request stands, except that a user's stop
    (killed) overrides any other: an interrupt or a timeout asked for later never undoes it."""
    return current is None or wanted is RunStatus.KILLED


@dataclass(frozen=True, slots=True)
class StopPlan:
    """What a stop does to a session's active run: the store ends it at once, for
    ``end_reason``, or asks its owner to end it with ``request`` (None: the request the run
    already has stands)."""

    end_reason: str | None = None
    request: RunStatus | None = None


def plan_stop(run: Run, wanted: RunStatus, now: datetime) -> StopPlan:
    """How a stop asking for ``wanted`` treats ``run``. A run that never started, or whose
    owner stopped renewing its lease, has nobody to end it: the store ends it now. A live
    owner is asked, and ends the run itself."""
    if run.status is RunStatus.QUEUED:
        return StopPlan(end_reason=ENDED_BEFORE_START)
    if run.lease_expires_at <= now:
        return StopPlan(end_reason=ENDED_OWNER_GONE)
    return StopPlan(request=wanted if replaces_stop(run.stop_requested, wanted) else None)


#: What separates the texts of a run's model calls (steer mode makes several) in its reply,
#: stored (the run's assistant entries joined) and streamed alike.
REPLY_SEPARATOR = "\n\n"


def delivery_text(status: RunStatus, reply: str, error: str | None) -> str | None:
    """What a pushing channel receives when a run ends; None when there is nothing to say."""
    notes = {
        RunStatus.KILLED: "[stopped]",
        RunStatus.TIMEOUT: "[timed out]",
        RunStatus.INTERRUPTED: "[interrupted]",
        RunStatus.FAILED: f"[no reply: {error or 'the model failed'}]",
    }
    if status is RunStatus.DONE:
        return reply or None
    if not reply and status is not RunStatus.FAILED:
        return None  # a stop or interrupt with nothing said: the user knows
    return "\n".join(part for part in (reply, notes.get(status, "")) if part)


#: The longest wait a provider's or channel's ``retry-after`` is taken at: a larger one (a
#: misconfigured server, ``1e10``) would rest a key or hold a reply for years.
MAX_RETRY_AFTER_S = 3600


def cooldown_window(
    failures: int, windows: Sequence[float], retry_after: float | None
) -> float:
    """Seconds an auth profile (or one model on it) rests after its ``failures``-th failure
    in a row.

    When the provider said how long (``retry-after``), that is the rest, up to an hour;
    otherwise the windows grow with each failure in a row.
    """
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S)
    return windows[min(failures, len(windows)) - 1]


def same_key(rested: str | None, current: str | None) -> bool:
    """Whether a rest of the key fingerprinted ``rested`` is a rest of the ``current`` one;
    a rest of an unknown key counts as one of any key."""
    return rested is None or rested == current


def key_fingerprint(key: str) -> str:
    """A short fingerprint of a key that cannot give the key back: the first 8 hex digits
    of its SHA-256, enough to tell a changed key from the one that failed."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def retry_delay(attempts: int, retry_after: float | None = None) -> timedelta:
    """Backoff between delivery attempts: 1 s, 2 s, 4 s, ... at most 5 minutes."""
    seconds = min(2 ** max(0, attempts - 1), 300)
    if retry_after is not None:
        seconds = max(seconds, min(retry_after, MAX_RETRY_AFTER_S))
    return timedelta(seconds=seconds)


def debounce_until(
    settings: QueueSettings, waiting: Sequence[datetime], last_run_ended: datetime | None,
    now: datetime,
) -> datetime | None:
    """When a session's waiting messages (arrival times, oldest first) may be claimed, if
    that is still ahead.

    Messages that queued behind a run (the oldest arrived before the session's last run
    ended) wait for ``debounce_ms`` of quiet after the newest, so what is typed during a reply
    is answered in one go. A message to an idle session is claimed at once, and interrupt mode
    never waits. Only stored times decide, so every process applies the same rule.
    """
    if not waiting or settings.debounce_ms == 0 or settings.mode is QueueMode.INTERRUPT:
        return None
    if last_run_ended is None or waiting[0] >= last_run_ended:
        return None
    until = waiting[-1] + timedelta(milliseconds=settings.debounce_ms)
    return until if until > now else None


def runtime_ms(run: Run, ended_at: datetime) -> int:
    start = run.started_at or run.created_at
    return max(0, (ended_at - start) // timedelta(milliseconds=1))


def summary_note(texts: Sequence[str]) -> str:
    """The note a run receives about messages dropped under the ``summarize`` policy."""
    previews = "; ".join(preview(text, 80) for text in texts)
    count = len(texts)
    noun = "message was" if count == 1 else "messages were"
    return f"[{count} earlier {noun} dropped from a full queue: {previews}]"


def preview(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
