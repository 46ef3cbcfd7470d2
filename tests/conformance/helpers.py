"""Short ways to put a store into the state a test needs, through its public commands."""

from __future__ import annotations

from datetime import timedelta

from clawgate.domain import (
    ModelRef,
    NewInbound,
    QueueMode,
    QueuePatch,
    QueueSettings,
    Run,
    RunOutcome,
    RunStatus,
)
from clawgate.store.protocol import Acceptance, Claim, Store

LEASE = timedelta(seconds=15)
FOLLOWUP = QueueSettings(mode=QueueMode.FOLLOWUP, debounce_ms=0)
ECHO = ModelRef("echo", "echo")
OWNER = "own_a"
OTHER = "own_b"


async def say(
    store: Store, text: str, key: str = "s1", cmid: str | None = None,
    defaults: QueueSettings = FOLLOWUP,
) -> Acceptance:
    return await store.accept_inbound(
        key, NewInbound(channel="test", text=text, channel_message_id=cmid), defaults
    )


async def claim(
    store: Store, session_id: str, owner: str = OWNER, defaults: QueueSettings = FOLLOWUP
) -> Claim:
    claimed = await store.claim_next(session_id, owner, LEASE, defaults)
    assert isinstance(claimed, Claim), f"expected a claim, got {claimed!r}"
    return claimed


async def running(
    store: Store, text: str = "hi", key: str = "s1", owner: str = OWNER,
    defaults: QueueSettings = FOLLOWUP,
) -> Run:
    """A session with one run in progress, owned by ``owner`` (claimed under ``defaults``)."""
    accepted = await say(store, text, key, defaults=defaults)
    claimed = await claim(store, accepted.session.id, owner, defaults)
    run = await store.start_run(
        claimed.run.id, owner, ECHO, store.clock.now() + timedelta(seconds=600)
    )
    assert run is not None
    return run


async def finish(store: Store, run: Run, reply: str = "done", owner: str = OWNER) -> Run | None:
    """End a run ``done`` (starting it first if it is only queued)."""
    if run.status is RunStatus.QUEUED:
        await store.start_run(run.id, owner, ECHO, store.clock.now() + timedelta(seconds=600))
    return await store.finish_run(run.id, owner, RunOutcome(RunStatus.DONE, reply))


async def set_mode(store: Store, mode: QueueMode, key: str = "s1") -> None:
    await store.set_queue(key, QueuePatch(mode=mode))
