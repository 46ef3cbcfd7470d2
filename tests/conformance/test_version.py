"""The store's version: it moves when anything is written, by any process, and only then.

What looks for other processes' work (the supervisor, the gateway's event feed) waits for
the version to move instead of querying: a write it missed would leave a stop unanswered,
and a version that moved on reads would keep an idle process busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from clawgate.domain import ModelRef, RunStatus
from clawgate.store.protocol import Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import LEASE, OWNER, running, say
from tests.stores import StoreBackend

#: A bound on waiting for a write to be noticed (a store notices within its watch interval).
NOTICED_WITHIN_S = 10.0
#: How long a version that should stay is watched (several watch intervals).
QUIET_S = 0.5


async def _moved(store: Store, before: int) -> bool:
    return await store.changed(before, NOTICED_WITHIN_S) != before


async def _settled(store: Store) -> int:
    """The version once every write so far has been noticed (it stayed for ``QUIET_S``)."""
    for _ in range(20):
        version = await store.version()
        if await store.changed(version, QUIET_S) == version:
            return version
    raise AssertionError("the version kept moving with nothing being written")


async def _read_everything_a_poller_reads(store: Store) -> None:
    await store.stop_requests(OWNER)
    await store.claimable_sessions()
    await store.queue_settings(frozenset({"ses_unknown"}))
    await store.recover_expired()  # nothing has expired: nothing is written
    await store.events_after(0, None, 100)
    await store.last_event_seq()
    await store.list_sessions()
    await store.take_deliveries("telegram", LEASE)  # nothing to deliver: nothing is taken


async def test_the_version_stays_while_only_reads_happen(backend: StoreBackend) -> None:
    store, other = await backend.handle(), await backend.handle()
    await running(store, "hello")
    before = await _settled(store)

    await _read_everything_a_poller_reads(store)
    await _read_everything_a_poller_reads(other)

    assert await store.changed(before, QUIET_S) == before


async def test_a_stop_from_another_process_wakes_a_waiting_poller(
    backend: StoreBackend,
) -> None:
    poller, other = await backend.handle(), await backend.handle()
    run = await running(poller, "hello")
    seen = await _settled(poller)
    waiting = asyncio.create_task(poller.changed(seen, NOTICED_WITHIN_S))
    await asyncio.sleep(0)  # the poller waits before the stop is written

    await other.request_stop(run.session_id)  # `clawgate stop` in another terminal

    assert await waiting != seen
    assert await poller.version() != seen
    assert await poller.stop_requests(OWNER) == {run.id: RunStatus.KILLED}


async def test_each_kind_of_write_moves_the_version(
    backend: StoreBackend, clock: ManualClock
) -> None:
    poller, writer = await backend.handle(), await backend.handle()
    run = await running(writer, "hello")
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: say(writer, "another", key="s3"),
        lambda: writer.set_model("s1", ModelRef("echo", "other")),
        lambda: writer.renew_leases(OWNER, frozenset({run.id}), LEASE),
        lambda: writer.record_cooldown("echo:default", "rate_limited", (60.0,), None),
        lambda: writer.reset_session("s3"),
        lambda: say(poller, "its own", key="s4"),  # the poller's own writes count too
    ]
    for write in writes:
        before = await poller.version()
        clock.advance(1)
        await write()
        assert await _moved(poller, before)


async def test_a_lease_running_out_moves_nothing_until_it_is_recovered(
    backend: StoreBackend, clock: ManualClock
) -> None:
    poller, owner = await backend.handle(), await backend.handle()
    await running(owner, "hello")
    before = await _settled(poller)
    clock.advance(LEASE.total_seconds() * 2)  # time alone: pollers look for this on a timer

    assert await poller.changed(before, QUIET_S) == before
    assert len(await poller.recover_expired()) == 1
    assert await _moved(poller, before)
