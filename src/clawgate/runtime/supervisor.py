"""The runtime's heartbeat: one ``tick`` checks everything that can change under it.

Each tick: honour stop requests made by other processes, end runs past their deadline, renew
the leases of the runs this process works on, recover orphaned runs, pick up sessions whose
waiting messages nobody is serving, and deliver replies whose retry is due. ``run`` calls
``tick`` every poll interval; tests call ``tick`` directly with a manual clock.

What only a write can change (a stop request, a waiting message) is looked for when the
store's version moved since the last look; what time alone changes (an expired lease, a
retry come due) at least every ``LOOK_EVERY``. An idle process (no run of its own in flight)
does not tick every poll interval: it waits for the store's version to move, or for the next
look. So it runs its queries once a second, yet a stop or a message from another process is
acted on within a poll interval or two. A change of queue settings, which only a write makes,
is looked for only when the version moved: one read for every session waiting out its quiet
time in this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from clawgate.clock import Clock
from clawgate.domain import OwnerInfo, RunStatus
from clawgate.errors import StoreClosed
from clawgate.runtime.delivery import Deliverer
from clawgate.runtime.lanes import Lanes
from clawgate.runtime.recovery import recover_dead_owners, recover_expired
from clawgate.runtime.runner import Runner
from clawgate.runtime.scope import Scope
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import Store

log = logging.getLogger(__name__)

#: How often the store is looked at when its version has not moved: an expired lease or a
#: retry come due is noticed within this.
LOOK_EVERY = timedelta(seconds=1)


class Supervisor:
    def __init__(
        self, store: Store, runner: Runner, lanes: Lanes, scope: Scope,
        settings: RuntimeSettings, owner: OwnerInfo, clock: Clock, deliverer: Deliverer,
    ) -> None:
        self._store = store
        self._runner = runner
        self._lanes = lanes
        self._scope = scope
        self._settings = settings
        self._owner = owner
        self._clock = clock
        self._deliverer = deliverer
        self._next_renewal: datetime | None = None
        self._next_recovery: datetime | None = None
        self._next_look: datetime | None = None
        self._seen_version: int | None = None
        self._look_soon = False
        self._nudge = asyncio.Event()  # ends an idle wait at once

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except StoreClosed:
                log.warning("the store is closed; supervision ends")
                return
            except Exception:  # the outermost loop: log and keep supervising
                log.exception("supervisor tick failed")
            await self._pause(started)

    async def _pause(self, started: float) -> None:
        """Until the next tick: a poll interval while this process has work in flight (its
        deadlines and stop requests); when idle, until the store is written or a look is due.
        Ticks are never closer than a poll interval."""
        poll = self._settings.poll_interval
        if not self._runner.held and self._seen_version is not None:
            await self._until_written_or_nudged(self._seen_version)
        await asyncio.sleep(max(0.0, poll - (time.monotonic() - started)))

    async def _until_written_or_nudged(self, version: int) -> None:
        written = asyncio.ensure_future(
            self._store.changed(version, LOOK_EVERY.total_seconds()))
        nudged = asyncio.ensure_future(self._nudge.wait())
        try:
            await asyncio.wait({written, nudged}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (written, nudged):
                waiting.cancel()
            await asyncio.gather(written, nudged, return_exceptions=True)
            self._nudge.clear()

    async def tick(self) -> None:
        version = await self._store.version()  # before the look: a later write moves it
        started = self._clock.now()
        written = version != self._seen_version
        look = self._worth_a_look(version, started)
        if look:
            await self._honour_stop_requests()
        self._enforce_deadlines()
        await self._renew_leases()
        await self._recover(look)
        if look:
            await self._pick_up_waiting()
            if written:  # only a write changes queue settings
                await self._lanes.recheck_quiet()
            self._deliverer.kick()  # replies whose retry is due
            self._seen_version, self._next_look = version, started + LOOK_EVERY

    def _worth_a_look(self, version: int, now: datetime) -> bool:
        """Whether the store was written since the last look, or a look is due anyway."""
        soon, self._look_soon = self._look_soon, False
        return (soon or version != self._seen_version or self._next_look is None
                or now >= self._next_look)

    async def _honour_stop_requests(self) -> None:
        if not self._runner.active:
            return
        for run_id, status in (await self._store.stop_requests(self._owner.id)).items():
            reason = "stopped by request" if status is RunStatus.KILLED else (
                "interrupted by a newer message")
            self._runner.stop(run_id, status, reason)

    def _enforce_deadlines(self) -> None:
        now = self._clock.now()
        limit = self._settings.run_timeout.total_seconds()
        for run_id, work in list(self._runner.active.items()):
            if work.deadline <= now:
                self._runner.stop(run_id, RunStatus.TIMEOUT, f"timed out after {limit:g}s")

    async def _renew_leases(self) -> None:
        now = self._clock.now()
        if self._next_renewal is not None and now < self._next_renewal:
            return
        held = frozenset(self._runner.held)
        renewed = await self._store.renew_leases(self._owner.id, held, self._settings.lease)
        for lost in held - renewed:
            self._runner.stop(lost, RunStatus.INTERRUPTED, "lost its lease")
        self._next_renewal = now + self._settings.renew_every

    async def _recover(self, look: bool) -> None:
        """Expired leases at every look; dead processes every lease/3."""
        now = self._clock.now()
        if self._next_recovery is None or now >= self._next_recovery:
            await recover_dead_owners(self._store, self._owner)
            self._next_recovery = now + self._settings.renew_every
        if look:
            await recover_expired(self._store)

    async def _pick_up_waiting(self) -> None:
        """Serve the sessions with waiting work. Those waiting out their quiet time here are
        not asked for: however many, they do not hide the others (at most 100 are listed)."""
        waiting = await self._store.claimable_sessions(
            await self._scope.narrow(), excluding=self._lanes.in_quiet_time())
        for session_id in waiting:
            self._lanes.look_again(session_id)

    def recover_soon(self) -> None:
        """Make the next tick look for orphaned runs (a waiting message just arrived)."""
        self._next_recovery = None
        self._look_soon = True
        self._nudge.set()
