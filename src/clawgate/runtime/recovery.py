"""Freeing sessions whose run owner is gone: expired leases, and dead processes on this host."""

from __future__ import annotations

import logging

from clawgate.domain import OwnerInfo, Run
from clawgate.runtime.owner import is_gone
from clawgate.store.protocol import Store

log = logging.getLogger(__name__)

GONE_REASON = "interrupted: the process that ran it exited (pid {pid} on {host})"


async def recover(store: Store, me: OwnerInfo | None) -> list[Run]:
    """End every orphaned run ``interrupted``; return them. Safe to run from anywhere."""
    ended: list[Run] = []
    if me is not None:
        for owner in await store.owners_with_active_runs():
            if is_gone(owner, me):
                reason = GONE_REASON.format(pid=owner.pid, host=owner.host)
                ended += await store.recover_owner(owner.id, reason)
    ended += await store.recover_expired()
    for run in ended:
        log.warning("recovered run %s of session %s: %s", run.id, run.session_id, run.error)
    return ended
