"""Stopping a session's run from any process, and saying what happened.

The store ends a run itself when it has not started or its owner is gone. Otherwise the
owner is asked (it polls for requests) and we wait for the run to end; if the owner stops
renewing its lease meanwhile, the store ends the run for us. Either way the wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clawgate.clock import Clock
from clawgate.domain import Run, RunStatus
from clawgate.store.protocol import StopOutcome, StopResult, Store


@dataclass(frozen=True, slots=True)
class StopReport:
    session_key: str
    first: StopResult  # what the store did when asked
    final: Run | None  # the run as it is now (None: nothing was active)
    waited_s: float = 0.0
    session_exists: bool = True
    compaction_stopped: bool = False  # a /compact in progress was ended too

    @classmethod
    def nothing(cls, session_key: str) -> StopReport:
        """A stop of a key that has no session yet (a typo, or before its first message):
        nothing to do."""
        return cls(session_key, StopResult(StopOutcome.NO_RUN), None, session_exists=False)

    @property
    def confirmed(self) -> bool:
        return self.final is None or self.final.status.terminal

    def describe(self) -> str:
        if not self.session_exists:
            return f"session {self.session_key} has no conversation yet: nothing was running"
        compaction = f"stopped compacting session {self.session_key}" if (
            self.compaction_stopped) else ""
        parts = [compaction, self._run_part(), self._queue_part()]
        return "; ".join(part for part in parts if part)

    def _run_part(self) -> str:
        run = self.final
        if run is None:
            return "" if self.compaction_stopped else (
                f"nothing was running in session {self.session_key}")
        if not run.status.terminal:
            return (f"asked the owner of run {run.id} to stop it; it has not confirmed yet "
                    "(its lease will expire if it is stuck)")
        if self.first.outcome is StopOutcome.SIGNALLED and run.status is not RunStatus.KILLED:
            return f"run {run.id} had already ended ({run.status})"
        seconds = (run.runtime_ms or 0) / 1000
        return (f"stopped run {run.id} in session {self.session_key} "
                f"({run.status} after {seconds:.1f}s)")

    def _queue_part(self) -> str:
        count = len(self.first.dropped)
        if count == 0:
            return "no messages were waiting"
        noun = "message" if count == 1 else "messages"
        return f"dropped {count} waiting {noun}{summaries_part(self.first)}"


def summaries_part(result: StopResult) -> str:
    """What a stop or reset did to the summaries of messages the full queue dropped
    earlier: no reply will be told of them now."""
    count = len(result.cleared_summaries)
    if not count:
        return ""
    noun = "message" if count == 1 else "messages"
    return f" (and the summary of {count} {noun} the full queue dropped earlier)"


async def stop_and_wait(
    store: Store, session_key: str, session_id: str, clock: Clock, poll_interval: float,
    patience: float, on_signalled: Callable[[Run], None] | None = None,
    on_wait: Callable[[Run], None] | None = None,
    pause: Callable[[], Awaitable[None]] | None = None,
) -> StopReport:
    """Stop the session's active run and wait (at most ``patience`` s) for it to end.

    ``on_signalled`` runs once when the owner was asked (the owner may be this process);
    ``on_wait`` on every round of waiting (to show progress); ``pause`` replaces the plain
    sleep between looks at the store (to wake on local events).
    """
    started = time.monotonic()
    first = await store.request_stop(session_id)
    run = first.run
    if first.outcome is StopOutcome.SIGNALLED and run is not None and on_signalled is not None:
        on_signalled(run)
    while run is not None and not run.status.terminal:
        if time.monotonic() - started > patience:
            break
        if run.lease_expires_at <= clock.now():  # the owner is gone: the store ends it
            forced = await store.request_stop(session_id, clear_queue=False)
            run = forced.run if forced.run is not None and forced.run.id == run.id else (
                await store.get_run(run.id))
            continue
        if on_wait is not None:
            on_wait(run)
        await (pause() if pause is not None else asyncio.sleep(poll_interval))
        run = await store.get_run(run.id)
    return StopReport(session_key, first, run, time.monotonic() - started)
