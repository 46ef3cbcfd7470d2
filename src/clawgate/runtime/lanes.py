"""One lane per session in this process: claim the next waiting work, run it, repeat.

The store decides who may run a session (one active run, enforced by an index); a lane is
only this process's worker for it. ``kick`` is safe to call any time: a lane that is about
to finish notices the kick and looks again, so no message is left waiting for the next poll.
A lane waiting out its session's quiet time (debounce) is woken by a kick too, and claims
again: the store recomputes the deadline with the settings in force now, so a queue change
(``debounce:0``, interrupt mode) reaches messages already waiting. A change made by another
process reaches them through ``recheck_quiet``: once the store was written, one read of the
queue settings of every session waiting out a quiet time here, and only the lanes whose
settings changed claim again.

Once this process is closing (``stop_claiming``), no lane claims again: a run already taken
may finish within the grace period, but messages still waiting their turn stay waiting in
the store, for the next process to answer, rather than start a run only to be cut short.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from clawgate.clock import Clock
from clawgate.domain import QueueSettings, merge_queue
from clawgate.runtime.runner import Runner
from clawgate.runtime.scope import Scope
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import Claim, Deferred, Store

log = logging.getLogger(__name__)


@dataclass
class _Quiet:
    """A lane waiting out its session's quiet time, until ``woken`` (then it claims again)."""

    settings: QueueSettings  # the session's queue settings that set the deadline
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class Lanes:
    def __init__(
        self, store: Store, runner: Runner, settings: RuntimeSettings, owner_id: str,
        scope: Scope, clock: Clock, after_run: Callable[[], None],
    ) -> None:
        self._store = store
        self._runner = runner
        self._settings = settings
        self._owner = owner_id
        self._scope = scope
        self._clock = clock
        self._after_run = after_run
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kicked: set[str] = set()
        self._quiet: dict[str, _Quiet] = {}  # lanes in their session's quiet time
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._hurry = asyncio.Event()
        self._closing = asyncio.Event()

    def kick(self, session_id: str) -> None:
        if self._closing.is_set():
            return
        self._kicked.add(session_id)
        quiet = self._quiet.get(session_id)
        if quiet is not None:
            quiet.woken.set()
        if session_id not in self._tasks:
            self._tasks[session_id] = asyncio.create_task(
                self._lane(session_id), name=f"clawgate lane {session_id}"
            )

    def look_again(self, session_id: str) -> None:
        """A session has waiting work, maybe from another process: it gets a lane (a lane
        claiming or running looks again once it is done, as for a kick). A lane in its quiet
        time is left to it: only a change of queue settings ends that (``recheck_quiet``)."""
        if session_id not in self._quiet:
            self.kick(session_id)

    def in_quiet_time(self) -> frozenset[str]:
        """The sessions whose lane waits out their quiet time (served: nothing to pick up)."""
        return frozenset(self._quiet)

    async def recheck_quiet(self) -> None:
        """The store was written, maybe by another process: the lanes in their quiet time
        whose session's queue settings changed (or that were archived) claim again. One
        read, however many lanes wait."""
        if not self._quiet:
            return
        waiting = dict(self._quiet)
        now = await self._store.queue_settings(frozenset(waiting))
        for session_id, quiet in waiting.items():
            patch = now.get(session_id)
            if patch is None or merge_queue(self._settings.queue, patch) != quiet.settings:
                quiet.woken.set()

    def stop_claiming(self) -> None:
        """Take no more waiting work: runs in flight go on, nothing new starts (not even a
        steered message folded into a run in flight), and what waits stays waiting."""
        self._closing.set()
        self._runner.stop_steering()

    async def drain(self, grace: float) -> None:
        """Let runs in flight finish for ``grace`` seconds (or until ``hurry``), then cancel
        them; no new run starts meanwhile.

        Cancelled runs end interrupted, and that is recorded.
        """
        self.stop_claiming()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        finished = asyncio.create_task(asyncio.wait(tasks))
        hurried = asyncio.create_task(self._hurry.wait())
        try:
            await asyncio.wait({finished, hurried}, timeout=grace,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
            hurried.cancel()
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=max(grace, 1.0))

    def hurry(self) -> None:
        """End the grace period of a ``drain`` now (or before it starts)."""
        self._hurry.set()

    def abandon(self) -> None:
        """Cancel every lane without waiting (a crash, as far as the store can tell)."""
        self._runner.abandon()
        for task in self._tasks.values():
            task.cancel()

    async def _lane(self, session_id: str) -> None:
        try:
            while not self._closing.is_set():
                self._kicked.discard(session_id)
                if not await self._scope.wants(session_id):
                    break
                async with self._slots:  # a slot first: no lease is held while waiting
                    if self._closing.is_set():  # closing began while this lane waited
                        break
                    claim = await self._store.claim_next(
                        session_id, self._owner, self._settings.lease, self._settings.queue
                    )
                    if isinstance(claim, Claim):
                        await self._runner.execute(claim)
                        self._after_run()
                        continue
                if isinstance(claim, Deferred):
                    await self._quiet_until(session_id, claim)
                elif session_id not in self._kicked:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:  # the outermost loop of a lane: log, and let the next kick retry
            log.exception("lane for session %s failed", session_id)
        finally:
            self._tasks.pop(session_id, None)

    async def _quiet_until(self, session_id: str, deferred: Deferred) -> None:
        """Wait out the quiet time, until a kick, a change of the session's queue settings
        (then the next claim recomputes the deadline), or closing (nothing more is claimed).
        A kick since this round's claim began ends it at once."""
        if session_id in self._kicked:
            return
        quiet = self._quiet[session_id] = _Quiet(deferred.settings)
        woken = asyncio.ensure_future(quiet.woken.wait())
        closing = asyncio.ensure_future(self._closing.wait())
        left = (deferred.until - self._clock.now()).total_seconds()
        try:
            await asyncio.wait({woken, closing}, timeout=max(0.0, left),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            del self._quiet[session_id]
            for waiting in (woken, closing):
                waiting.cancel()
            await asyncio.gather(woken, closing, return_exceptions=True)
