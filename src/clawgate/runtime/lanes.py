"""One lane per session in this process: claim the next waiting work, run it, repeat.

The store decides who may run a session (one active run, enforced by an index); a lane is
only this process's worker for it. ``kick`` is safe to call any time: a lane that is about
to finish notices the kick and looks again, so no message is left waiting for the next poll.

Once this process is closing (``stop_claiming``), no lane claims again: a run already taken
may finish within the grace period, but messages still waiting their turn stay waiting in
the store, for the next process to answer, rather than start a run only to be cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from clawgate.clock import Clock
from clawgate.runtime.runner import Runner
from clawgate.runtime.scope import Scope
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import Claim, Deferred, Store

log = logging.getLogger(__name__)


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
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._hurry = asyncio.Event()
        self._closing = asyncio.Event()

    def kick(self, session_id: str) -> None:
        if self._closing.is_set():
            return
        self._kicked.add(session_id)
        if session_id not in self._tasks:
            self._tasks[session_id] = asyncio.create_task(
                self._lane(session_id), name=f"clawgate lane {session_id}"
            )

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
                    await self._quiet_until(claim)
                elif session_id not in self._kicked:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:  # the outermost loop of a lane: log, and let the next kick retry
            log.exception("lane for session %s failed", session_id)
        finally:
            self._tasks.pop(session_id, None)

    async def _quiet_until(self, deferred: Deferred) -> None:
        """Wait out the debounce time, or until closing begins (nothing more is claimed)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout((deferred.until - self._clock.now()).total_seconds()):
                await self._closing.wait()
