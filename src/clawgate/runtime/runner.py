"""Carrying one claimed run from ``queued`` to a recorded end.

The model conversation runs in a child task, so stop, timeout and interrupt cancel only that
task: the run's lane carries on with the next message. Whatever happens, the final status is
written once, shielded from cancellation, and only if this process still owns the run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from clawgate.clock import Clock
from clawgate.domain import (
    REPLY_SEPARATOR,
    ContextEntry,
    ModelRef,
    QueueMode,
    Role,
    Run,
    RunOutcome,
    RunStatus,
    cut_short,
    replaces_stop,
)
from clawgate.errors import ClawgateError, ContextOverflow, ProviderError, StoreError
from clawgate.providers.base import ChatMessage, ChatRole, TextDelta
from clawgate.providers.routing import Router, Trail
from clawgate.runtime import compaction
from clawgate.runtime.bus import EventBus, MessageDecided, ReplyDelta, RunChanged
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import Claim, Store

log = logging.getLogger(__name__)

#: Extra model calls one run may make for steered messages.
MAX_STEERS = 20


class RunLost(ClawgateError):
    """The run was ended or taken over by someone else while we worked on it."""


@dataclass
class ActiveRun:
    run: Run
    session_key: str
    deadline: datetime
    task: asyncio.Task[None] | None = None
    stop_status: RunStatus | None = None
    stop_reason: str = ""
    steering: bool = False  # steer mode was in force when the run started
    trail: Trail = field(default_factory=Trail)  # every candidate tried, tokens spent
    segment: list[str] = field(default_factory=list)  # reply text not yet in the transcript
    said: bool = False  # some reply text was streamed already
    streamed: int = 0  # characters streamed so far: where the next piece starts

    def stop(self, status: RunStatus, reason: str) -> None:
        """Ask the model call to end; the first reason wins, except that stop beats all."""
        if replaces_stop(self.stop_status, status):
            self.stop_status, self.stop_reason = status, reason
        if self.task is not None:
            self.task.cancel()

    def take(self, text: str) -> tuple[int, str]:
        """Add streamed text to the reply; return where it starts in the run's streamed text,
        and the piece as it is to be streamed: the text of a later model call starts with
        the separator the stored reply has there."""
        later = self.said and not self.segment
        self.segment.append(text)
        self.said = True
        piece = REPLY_SEPARATOR + text if later else text
        offset, self.streamed = self.streamed, self.streamed + len(piece)
        return offset, piece

    def so_far(self) -> ReplySoFar | None:
        """The reply text not yet in the transcript, while the model call is under way (once
        it is over, the reply is being recorded: the transcript is where to read it)."""
        if self.task is None or self.task.done():
            return None
        return ReplySoFar(self.run.id, "".join(self.segment), self.streamed)


@dataclass(frozen=True, slots=True)
class ReplySoFar:
    """What a run has streamed and not yet stored: ``text`` ends at character ``end`` of
    the run's streamed text (its ``run.delta`` pieces one after the other)."""

    run_id: str
    text: str
    end: int


class Runner:
    def __init__(
        self, store: Store, router: Router, settings: RuntimeSettings,
        owner_id: str, bus: EventBus, clock: Clock, shut_down: str = "clawgate shut down",
    ) -> None:
        self._store = store
        self._router = router
        self._settings = settings
        self._owner = owner_id
        self._bus = bus
        self._clock = clock
        self._shut_down = shut_down  # what happened when this process cancels its runs
        self.held: set[str] = set()  # run ids this process is working on (leases to renew)
        self.active: dict[str, ActiveRun] = {}  # started runs, by id
        self._abandoned = False
        self._steering = True  # runs in steer mode take messages that arrive meanwhile

    def stop_steering(self) -> None:
        """From now on no run takes steered messages (this process is closing): a run in
        flight ends with its current model call, and what waits stays waiting."""
        self._steering = False

    def abandon(self) -> None:
        """From now on write nothing: the process is to be treated as crashed."""
        self._abandoned = True
        for work in self.active.values():
            if work.task is not None:
                work.task.cancel()

    def reply_so_far(self, session_id: str) -> ReplySoFar | None:
        """The reply a run of this session is streaming in this process, if one is."""
        for work in self.active.values():
            if work.run.session_id == session_id:
                return work.so_far()
        return None

    def stop(self, run_id: str, status: RunStatus, reason: str) -> bool:
        work = self.active.get(run_id)
        if work is None:
            return False
        work.stop(status, reason)
        return True

    async def execute(self, claim: Claim) -> Run | None:
        """Run a claimed turn to its end; return the run as recorded."""
        self.held.add(claim.run.id)
        try:
            return await self._execute(claim)
        finally:
            self.held.discard(claim.run.id)
            self.active.pop(claim.run.id, None)

    async def _execute(self, claim: Claim) -> Run | None:
        key = claim.session.key
        self._bus.publish(RunChanged(key, claim.run))
        for message in (*claim.messages, *claim.dropped):
            self._bus.publish(MessageDecided(key, message))
        wanted = claim.session.model or self._settings.default_model
        chain = self._router.chain(wanted)
        if not chain:
            known = ", ".join(sorted(self._router.providers)) or "none"
            error = f"no provider named {wanted.provider!r} is configured (known: {known})"
            return await self._record(claim.run, key, RunOutcome(RunStatus.FAILED, error=error))
        deadline = self._clock.now() + self._settings.run_timeout
        started = await self._store.start_run(claim.run.id, self._owner, chain[0], deadline)
        if started is None:  # stopped before it started, or no longer ours
            return await self._publish_actual(claim.run.id, key)
        self._bus.publish(RunChanged(key, started))
        steering = claim.run.queue_mode is QueueMode.STEER
        work = ActiveRun(started, key, deadline, steering=steering, trail=Trail(deadline=deadline))
        work.task = asyncio.create_task(
            self._converse(work, chain), name=f"clawgate run {started.id}"
        )
        self.active[started.id] = work
        outcome = await self._outcome(work)
        return await self._record(started, key, settled(outcome, work.trail))

    async def _outcome(self, work: ActiveRun) -> RunOutcome:
        assert work.task is not None
        try:
            await work.task
            return RunOutcome(RunStatus.DONE, "".join(work.segment))
        except asyncio.CancelledError:
            partial = "".join(work.segment)
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # this process is shutting down
                work.task.cancel()
                reason = f"{self._shut_down} before the reply was complete"
                outcome = RunOutcome(RunStatus.INTERRUPTED, partial, error=reason)
                await self._record(work.run, work.session_key, settled(outcome, work.trail))
                raise
            status = work.stop_status or RunStatus.KILLED
            return RunOutcome(status, partial, error=work.stop_reason or "stopped")
        except ProviderError as exc:
            return RunOutcome(RunStatus.FAILED, "".join(work.segment), error=str(exc))
        except RunLost:
            return RunOutcome(RunStatus.INTERRUPTED, error="the run was taken over")
        except Exception as exc:  # a bug in an adapter must not leave the run open
            log.exception("run %s failed unexpectedly", work.run.id)
            return RunOutcome(RunStatus.FAILED, error=f"internal error: {type(exc).__name__}")

    async def _converse(self, work: ActiveRun, chain: list[ModelRef]) -> None:
        """Call the model (again for each batch of steered messages).

        The router counts the tokens each call costs into ``work.trail``.
        """
        overflowed = False
        for _ in range(MAX_STEERS + 1):
            entries = await self._context(work, chain, force=overflowed)
            messages = context(entries, self._settings.system_prompt)
            try:
                async for event in self._router.stream(chain, messages, work.trail):
                    if isinstance(event, TextDelta) and event.text:
                        offset, piece = work.take(event.text)
                        self._bus.publish(ReplyDelta(work.session_key, work.run.session_id,
                                                     work.run.id, piece, offset))
            except ContextOverflow:
                if overflowed:  # compacted once already: it cannot fit
                    raise
                overflowed = True
                continue
            overflowed = False
            if not await self._steer(work):
                break

    async def _context(
        self, work: ActiveRun, chain: list[ModelRef], force: bool
    ) -> list[ContextEntry]:
        """The conversation to send, compacted first if it would not fit the window or has
        more entries than a model call may see."""
        session_id, system_prompt = work.run.session_id, self._settings.system_prompt
        reading = compaction.reading(self._settings.context_entries)
        entries = await self._store.conversation(session_id, reading)
        budget = compaction.for_model(
            self._router, chain[0], system_prompt, self._settings.context_entries)
        if not force and not compaction.needs_compaction(entries, system_prompt, budget):
            return entries
        if force:  # the provider said it did not fit: our estimate was off, so halve it
            budget = replace(budget, keep=min(budget.keep, compaction.tokens(entries) // 2))
        compacted = False
        async for summary in compaction.summarize(
                self._router, chain, entries, budget, work.trail):
            if not await self._store.append_summary(
                    session_id, summary.text, summary.covers_through, summary.usage,
                    run_id=work.run.id, owner_id=self._owner):
                raise RunLost(f"run {work.run.id} is no longer ours")
            compacted = True
        return await self._store.conversation(session_id, reading) if compacted else entries

    async def _steer(self, work: ActiveRun) -> bool:
        """Fold messages that arrived meanwhile into this run (steer mode); True if any.

        The mode in force when the run took its messages governs it (the store keeps it
        with the run); a later /queue change applies from the next run.
        """
        if not (work.steering and self._steering):
            return False
        taken = await self._store.take_steering(work.run.id, self._owner, "".join(work.segment))
        if taken is None:
            raise RunLost(f"run {work.run.id} is no longer ours")
        if taken:
            work.segment.clear()
            for message in taken:
                self._bus.publish(MessageDecided(work.session_key, message))
        return bool(taken)

    async def _record(self, run: Run, key: str, outcome: RunOutcome) -> Run | None:
        """Write the end of a run, whatever cancellation is under way."""
        if self._abandoned:
            return None
        try:
            ended = await asyncio.shield(self._store.finish_run(run.id, self._owner, outcome))
        except StoreError as exc:  # the store is gone (crash, shutdown): the lease will tell
            log.warning("could not record the end of run %s: %s", run.id, exc)
            return None
        if ended is None:
            return await self._publish_actual(run.id, key)
        self._bus.publish(RunChanged(key, ended, outcome.attempts))
        return ended

    async def _publish_actual(self, run_id: str, key: str) -> Run | None:
        actual = await self._store.get_run(run_id)
        if actual is not None:
            self._bus.publish(RunChanged(key, actual))
        return actual


def settled(outcome: RunOutcome, trail: Trail) -> RunOutcome:
    """The outcome with what the router saw: every attempt (the one the run's end cut short
    included, so the run names the profile really in use) and every token the providers
    reported, whatever the end."""
    attempts = trail.ended(cut_short(outcome.status), outcome.error)
    return outcome.with_trail(attempts, trail.usage)


_ROLES = {Role.USER: ChatRole.USER, Role.ASSISTANT: ChatRole.ASSISTANT, Role.NOTE: ChatRole.USER}
SUMMARY_PREFIX = "Summary of the conversation so far:\n"


def context(entries: list[ContextEntry], system_prompt: str = "") -> tuple[ChatMessage, ...]:
    """The conversation a model sees: the system prompt, a summary if any, the rest."""
    prompt = (ChatMessage(ChatRole.SYSTEM, system_prompt),) if system_prompt else ()
    return prompt + tuple(
        ChatMessage(ChatRole.SYSTEM, SUMMARY_PREFIX + e.text) if e.summary
        else ChatMessage(_ROLES[e.role], e.text)
        for e in entries
    )
