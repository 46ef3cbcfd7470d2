"""Runs: one active per session, status only forward, owner-fenced writes, usage and replies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from clawgate.domain import (
    Fate,
    QueueMode,
    Role,
    RunOutcome,
    RunStatus,
    Usage,
)
from clawgate.store.protocol import Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import (
    ECHO,
    FOLLOWUP,
    LEASE,
    OTHER,
    OWNER,
    claim,
    finish,
    running,
    say,
    set_mode,
)
from tests.stores import StoreBackend


async def test_a_run_goes_queued_running_done_with_times_usage_and_reply(
    store: Store, clock: ManualClock
) -> None:
    accepted = await say(store, "hi")
    claimed = await claim(store, accepted.session.id)
    assert claimed.run.status is RunStatus.QUEUED
    assert claimed.run.started_at is None

    clock.advance(0.5)
    started = await store.start_run(
        claimed.run.id, OWNER, ECHO, store.clock.now() + timedelta(seconds=60)
    )
    assert started is not None
    assert started.status is RunStatus.RUNNING
    assert started.model == ECHO

    clock.advance(1.25)
    ended = await store.finish_run(
        claimed.run.id, OWNER, RunOutcome(RunStatus.DONE, "hello back", Usage(10, 3))
    )

    assert ended is not None
    assert ended.status is RunStatus.DONE
    assert ended.ended_at is not None
    assert ended.runtime_ms == 1250
    assert ended.usage == Usage(10, 3)
    assert await store.run_reply(claimed.run.id) == "hello back"
    session = await store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(10, 3)


async def test_a_session_never_has_two_active_runs_even_under_racing_claims(
    backend: StoreBackend,
) -> None:
    one, two = await backend.handle(), await backend.handle()
    accepted = await say(one, "a")
    await say(one, "b")

    claims = await asyncio.gather(*(
        store.claim_next(accepted.session.id, owner, LEASE, FOLLOWUP)
        for store, owner in [(one, OWNER), (two, OTHER)] * 5
    ))

    assert sum(c is not None for c in claims) == 1
    assert len([r for r in await one.active_runs() if r.session_id == accepted.session.id]) == 1


async def test_nothing_to_claim_while_a_run_is_active_or_nothing_waits(store: Store) -> None:
    run = await running(store)
    await say(store, "behind")
    assert await store.claim_next(run.session_id, OWNER, LEASE, FOLLOWUP) is None
    await finish(store, run)
    await claim(store, run.session_id)
    assert await store.claim_next("ses_unknown", OWNER, LEASE, FOLLOWUP) is None


@pytest.mark.parametrize("second", list(RunStatus))
async def test_a_finished_run_never_changes_again(store: Store, second: RunStatus) -> None:
    run = await running(store)
    await finish(store, run, reply="final")

    if second.terminal:
        again = await store.finish_run(run.id, OWNER, RunOutcome(second, "late"))
        assert again is None
    assert await store.start_run(run.id, OWNER, ECHO, store.clock.now()) is None
    assert await store.take_steering(run.id, OWNER, "late") is None

    after = await store.get_run(run.id)
    assert after is not None
    assert after.status is RunStatus.DONE
    assert await store.run_reply(run.id) == "final"


async def test_a_queued_run_cannot_be_finished_done_without_running(store: Store) -> None:
    accepted = await say(store, "hi")
    claimed = await claim(store, accepted.session.id)
    assert await store.finish_run(claimed.run.id, OWNER, RunOutcome(RunStatus.DONE)) is None
    failed = await store.finish_run(
        claimed.run.id, OWNER, RunOutcome(RunStatus.FAILED, error="no such model")
    )
    assert failed is not None
    assert failed.status is RunStatus.FAILED
    assert failed.runtime_ms == 0


async def test_only_the_owner_may_start_or_finish_its_run(store: Store) -> None:
    accepted = await say(store, "hi")
    claimed = await claim(store, accepted.session.id, owner=OWNER)

    assert await store.start_run(claimed.run.id, OTHER, ECHO, store.clock.now()) is None
    started = await store.start_run(claimed.run.id, OWNER, ECHO, store.clock.now())
    assert started is not None
    assert await store.finish_run(claimed.run.id, OTHER, RunOutcome(RunStatus.DONE)) is None
    assert await store.take_steering(claimed.run.id, OTHER, "") is None


async def test_a_stopped_reply_is_kept_and_marked(store: Store) -> None:
    run = await running(store)
    await store.finish_run(run.id, OWNER, RunOutcome(RunStatus.KILLED, "half a thou"))

    entries = await store.transcript(run.session_id)
    assert (entries[-1].role, entries[-1].text, entries[-1].stopped) == (
        Role.ASSISTANT, "half a thou", True
    )


async def test_steering_folds_waiting_messages_into_the_running_run(store: Store) -> None:
    await set_mode(store, QueueMode.STEER)
    run = await running(store, "write a poem")
    await say(store, "make it short")

    taken = await store.take_steering(run.id, OWNER, "Roses are")

    assert taken is not None
    assert [(m.text, m.fate, m.run_id) for m in taken] == [
        ("make it short", Fate.MERGED, run.id)
    ]
    entries = await store.transcript(run.session_id)
    assert [(e.role, e.text) for e in entries] == [
        (Role.USER, "write a poem"), (Role.ASSISTANT, "Roses are"), (Role.USER, "make it short"),
    ]


async def test_a_run_names_its_messages_and_a_steered_one_has_its_own_part_of_the_reply(
    store: Store,
) -> None:
    await set_mode(store, QueueMode.STEER)
    run = await running(store, "write a poem")
    first = (await store.list_inbound(run.session_id))[0]
    steered = (await say(store, "make it short")).message
    later = (await say(store, "and sad")).message
    await store.take_steering(run.id, OWNER, "Roses are")
    await finish(store, run, reply="Roses wilt")
    await say(store, "another question")  # not the run's

    assert [m.id for m in await store.run_messages(run.id)] == [
        first.id, steered.id, later.id]
    assert await store.run_messages("run_unknown") == []
    assert await store.run_reply(run.id) == "Roses are\n\nRoses wilt"
    assert await store.run_reply(run.id, after_message=first.id) == "Roses are\n\nRoses wilt"
    assert await store.run_reply(run.id, after_message=later.id) == "Roses wilt"


async def test_steering_takes_nothing_outside_steer_mode(store: Store) -> None:
    run = await running(store, "write a poem")
    await say(store, "make it short")
    assert await store.take_steering(run.id, OWNER, "Roses are") == []
    assert len(await store.transcript(run.session_id)) == 1


async def test_a_run_steers_by_the_mode_in_force_when_it_took_its_messages(
    store: Store,
) -> None:
    await set_mode(store, QueueMode.STEER)
    run = await running(store, "write a poem")
    await set_mode(store, QueueMode.FOLLOWUP)  # during the reply: for the next ones
    accepted = await say(store, "make it short")

    taken = await store.take_steering(run.id, OWNER, "Roses are")

    assert run.queue_mode is QueueMode.STEER
    assert accepted.active_run is not None
    assert accepted.active_run.queue_mode is QueueMode.STEER  # what decides its way
    assert [m.text for m in taken or []] == ["make it short"]


async def test_a_run_started_in_another_mode_is_not_steered_after_a_switch_to_steer(
    store: Store,
) -> None:
    run = await running(store, "write a poem")
    await set_mode(store, QueueMode.STEER)
    accepted = await say(store, "make it short")

    assert await store.take_steering(run.id, OWNER, "Roses are") == []
    assert accepted.active_run is not None
    assert accepted.active_run.queue_mode is QueueMode.FOLLOWUP
    await finish(store, run)
    assert [m.text for m in (await claim(store, run.session_id)).messages] == [
        "make it short"]  # answered after the reply, in the mode in force then


async def test_leases_are_renewed_only_for_the_named_runs_of_their_owner(
    store: Store, clock: ManualClock
) -> None:
    mine = await running(store, key="a")
    forgotten = await running(store, key="b")
    theirs = await running(store, key="c", owner=OTHER)

    renewed = await store.renew_leases(
        OWNER, frozenset({mine.id, theirs.id}), timedelta(seconds=60)
    )

    assert renewed == {mine.id}
    clock.advance(30)
    recovered = await store.recover_expired()
    assert {r.id for r in recovered} == {forgotten.id, theirs.id}
    assert {r.status for r in recovered} == {RunStatus.INTERRUPTED}
    still = await store.get_run(mine.id)
    assert still is not None
    assert still.status is RunStatus.RUNNING


async def test_an_owner_that_lost_its_lease_cannot_write_after_a_takeover(
    store: Store, clock: ManualClock
) -> None:
    run = await running(store, "hi")
    await say(store, "next")
    clock.advance(LEASE.total_seconds() + 1)
    await store.recover_expired()
    taken_over = await claim(store, run.session_id, owner=OTHER)

    assert await store.finish_run(run.id, OWNER, RunOutcome(RunStatus.DONE, "late")) is None
    assert await store.take_steering(run.id, OWNER, "late") is None
    assert await store.renew_leases(OWNER, frozenset({run.id}), LEASE) == frozenset()
    texts = [e.text for e in await store.transcript(run.session_id)]
    assert "late" not in texts
    assert taken_over.messages[0].text == "next"
    stale = await store.get_run(run.id)
    assert stale is not None
    assert stale.status is RunStatus.INTERRUPTED
    assert stale.usage == Usage()
