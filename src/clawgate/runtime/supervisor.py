"""The runtime's heartbeat: one ``tick`` checks everything that can change under it.

Each tick: honour stop requests made by other processes, end runs past their deadline, renew
the leases of the runs this process works on, recover orphaned runs (an expired lease is
noticed within one tick), pick up sessions whose waiting messages nobody is serving, and
deliver replies whose retry is due. ``run`` calls ``tick`` every poll interval; tests call
``tick`` directly with a manual clock.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

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

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreClosed:
                log.warning("the store is closed; supervision ends")
                return
            except Exception:  # the outermost loop: log and keep supervising
                log.exception("supervisor tick failed")
            await asyncio.sleep(self._settings.poll_interval)

    async def tick(self) -> None:
        await self._honour_stop_requests()
        self._enforce_deadlines()
        await self._renew_leases()
        await self._recover()
        await self._pick_up_waiting()
        self._deliverer.kick()  # replies whose retry is due

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

    async def _recover(self) -> None:
        """Expired leases on every tick (a cheap look); dead processes every lease/3."""
        now = self._clock.now()
        if self._next_recovery is None or now >= self._next_recovery:
            await recover_dead_owners(self._store, self._owner)
            self._next_recovery = now + self._settings.renew_every
        await recover_expired(self._store)

    async def _pick_up_waiting(self) -> None:
        for session_id in await self._store.claimable_sessions(await self._scope.narrow()):
            self._lanes.kick(session_id)

    def recover_soon(self) -> None:
        """Make the next tick look for orphaned runs (a waiting message just arrived)."""
        self._next_recovery = None
