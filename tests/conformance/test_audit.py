"""``audit`` (what ``clawgate doctor`` reports) finds every broken promise a store can hold,
in the same words whatever the store.

Most of this damage is what the stores refuse to do, so ``Tamper`` makes it as another tool
could. The checks only a database file can fail (its pages, its guards, its transition
table) are the SQLite store's own: tests/acceptance/test_doctor.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from clawgate.domain import DropPolicy, Fate, QueueMode, QueueSettings
from clawgate.store import findings as found
from clawgate.store.protocol import Finding, Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import ECHO, LEASE, OWNER, claim, finish, running, say
from tests.conformance.tamper import Tamper
from tests.stores import StoreBackend

FILE_ONLY = frozenset({"integrity", "missing_guard", "transition_table"})


@pytest.fixture
def tamper(backend: StoreBackend) -> Tamper:
    return Tamper(backend)


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.code, f.subject or ""))


async def _audit(store: Store) -> list[Finding]:
    """What audit finds, less what only a SQLite file can suffer (a dropped guard)."""
    return _ordered([f for f in await store.audit() if f.code not in FILE_ONLY])


async def test_a_store_in_every_ordinary_state_is_healthy(store: Store) -> None:
    await finish(store, await running(store, key="done"))
    await running(store, key="busy")
    await say(store, "anyone there?", key="waiting")
    assert await store.audit() == []


async def test_a_run_kept_past_its_deadline_by_an_owner_that_renews_its_lease(
    store: Store, clock: ManualClock
) -> None:
    claimed = await claim(store, (await say(store, "hi")).session.id)
    deadline = clock.now() + timedelta(seconds=10)
    run = await store.start_run(claimed.run.id, OWNER, ECHO, deadline)
    assert run is not None

    async def renewed_for(seconds: int) -> None:
        for _ in range(seconds // 5):
            clock.advance(5)
            assert await store.renew_leases(OWNER, frozenset({run.id}), LEASE) == {run.id}

    await renewed_for(70)
    assert await store.audit() == []  # up to a minute past it: the owner may be ending it
    await renewed_for(10)
    assert await store.audit() == [found.past_deadline(run.id, deadline)]
    clock.advance(LEASE.total_seconds() + 1)  # the owner stops renewing: orphaned instead
    assert [f.code for f in await store.audit()] == ["orphaned_run"]


async def test_an_active_run_with_an_end_time(
    store: Store, tamper: Tamper, clock: ManualClock
) -> None:
    run = await running(store)
    tamper.end_time_on(run, clock.now())
    assert await _audit(store) == [found.contradictory_run(run.id, "running")]


async def test_a_session_with_two_active_runs(store: Store, tamper: Tamper) -> None:
    run = await running(store)
    tamper.second_active_run(run)
    assert await _audit(store) == [found.several_active_runs(run.session_id, 2)]


async def test_a_message_answered_without_a_run_or_dropped_without_a_reason(
    store: Store, tamper: Tamper, clock: ManualClock
) -> None:
    await running(store)
    answered, dropped = await say(store, "one"), await say(store, "two")
    tamper.decide_unexplained(answered.message.id, Fate.ANSWERED, clock.now())
    tamper.decide_unexplained(dropped.message.id, Fate.DROPPED, clock.now())
    assert await _audit(store) == _ordered([
        found.unexplained_fate(answered.message.id, "answered"),
        found.unexplained_fate(dropped.message.id, "dropped")])


async def test_a_message_left_waiting_in_an_archived_session(
    store: Store, tamper: Tamper, clock: ManualClock
) -> None:
    accepted = await say(store, "anyone there?")
    tamper.archive_keeping_waiting(accepted.session.id, clock.now())
    assert await _audit(store) == [found.waiting_in_archived(accepted.message.id)]


async def test_a_summary_left_waiting_for_a_reply_of_an_archived_session(
    store: Store, tamper: Tamper, clock: ManualClock
) -> None:
    summarize = QueueSettings(mode=QueueMode.COLLECT, debounce_ms=0, cap=1,
                              drop=DropPolicy.SUMMARIZE)
    run = await running(store)
    dropped, waiting = await say(store, "a", defaults=summarize), await say(
        store, "b", defaults=summarize)
    await finish(store, run)  # (its end would be recovered anyway)
    tamper.archive_keeping_waiting(run.session_id, clock.now())
    assert await _audit(store) == _ordered([
        found.summary_undeliverable(dropped.message.id),
        found.waiting_in_archived(waiting.message.id)])


async def test_records_naming_a_run_that_is_gone(store: Store, tamper: Tamper) -> None:
    run = await running(store)
    await finish(store, run)
    tamper.forget_run(run.id)  # its message and both transcript entries still name it
    assert await _audit(store) == [
        found.dangling_references(3, ["inbound", "transcript", "transcript"])]
