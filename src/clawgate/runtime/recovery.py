"""Freeing sessions whose run owner is gone: expired leases, and dead processes on this host."""

from __future__ import annotations

import logging

from clawgate.domain import OwnerInfo, Run
from clawgate.runtime.owner import is_gone
from clawgate.store.protocol import Store

log = logging.getLogger(__name__)

GONE_REASON = "the process that ran it exited (pid {pid} on {host})"


async def recover(store: Store, me: OwnerInfo) -> list[Run]:
    """End every orphaned run ``interrupted``; return them. Safe to run from anywhere."""
    return await recover_dead_owners(store, me) + await recover_expired(store)


async def recover_dead_owners(store: Store, me: OwnerInfo) -> list[Run]:
    """Runs of owners that ran on this machine and whose process has exited."""
    ended: list[Run] = []
    for owner in await store.owners_with_active_runs():
        if is_gone(owner, me):
            reason = GONE_REASON.format(pid=owner.pid, host=owner.host)
            ended += await _logged(store, await store.recover_owner(owner.id, reason))
    return ended


async def recover_expired(store: Store) -> list[Run]:
    """Runs whose owner stopped renewing the lease."""
    return await _logged(store, await store.recover_expired())


async def _logged(store: Store, runs: list[Run]) -> list[Run]:
    """Say which runs were recovered and why, naming each session by its key."""
    for run in runs:
        session = await store.get_session_by_id(run.session_id)
        log.warning("recovered run %s of session %s: %s; it ended interrupted", run.id,
                    session.key if session else run.session_id, run.error)
    return runs
