"""Stop works in every state; reset keeps the past; recovery frees sessions; audit sees it all."""

from __future__ import annotations

import pytest

from clawgate.domain import (
    Delivery,
    DropReason,
    Fate,
    ModelRef,
    QueueMode,
    QueuePatch,
    Role,
    RunOutcome,
    RunStatus,
)
from clawgate.errors import InvalidInput, UnknownSession
from clawgate.store.protocol import StopOutcome, Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import LEASE, OWNER, claim, finish, running, say


async def test_stop_with_nothing_running_says_so(store: Store) -> None:
    accepted = await say(store, "hi")
    run = (await claim(store, accepted.session.id)).run
    await finish(store, run)

    result = await store.request_stop(accepted.session.id)

    assert result.outcome is StopOutcome.NO_RUN
    assert result.dropped == ()


async def test_stop_ends_a_queued_run_itself(store: Store) -> None:
    accepted = await say(store, "hi")
    queued = (await claim(store, accepted.session.id)).run

    result = await store.request_stop(accepted.session.id)

    assert result.outcome is StopOutcome.ENDED
    assert result.run is not None
    assert (result.run.id, result.run.status) == (queued.id, RunStatus.KILLED)
    assert result.run.ended_at is not None


async def test_stop_signals_a_live_owner_and_clears_the_queue(store: Store) -> None:
    run = await running(store)
    waiting = await say(store, "behind")

    result = await store.request_stop(run.session_id)

    assert result.outcome is StopOutcome.SIGNALLED
    assert await store.stop_requests(OWNER) == {run.id: RunStatus.KILLED}
    assert [m.id for m in result.dropped] == [waiting.message.id]
    dropped = await store.get_message(waiting.message.id)
    assert dropped is not None
    assert (dropped.fate, dropped.reason) == (Fate.DROPPED, DropReason.STOPPED)


async def test_stop_ends_the_run_itself_when_the_owner_is_gone(
    store: Store, clock: ManualClock
) -> None:
    run = await running(store)
    clock.advance(LEASE.total_seconds() + 1)

    result = await store.request_stop(run.session_id)

    assert result.outcome is StopOutcome.ENDED
    assert result.run is not None
    assert result.run.status is RunStatus.KILLED


async def test_a_user_stop_overrides_an_interrupt_request(store: Store) -> None:
    run = await running(store)
    await store.request_stop(run.session_id, RunStatus.INTERRUPTED, clear_queue=False)
    assert await store.stop_requests(OWNER) == {run.id: RunStatus.INTERRUPTED}
    await store.request_stop(run.session_id, RunStatus.KILLED)
    assert await store.stop_requests(OWNER) == {run.id: RunStatus.KILLED}


async def test_an_interrupt_request_cannot_overwrite_a_user_stop(store: Store) -> None:
    run = await running(store)
    behind = await say(store, "behind")
    await store.request_stop(run.session_id, RunStatus.KILLED)
    newer = await say(store, "newer")  # in interrupt mode, it asks for an interrupt

    await store.request_stop(run.session_id, RunStatus.INTERRUPTED, clear_queue=False)

    requested = await store.stop_requests(OWNER)
    assert requested == {run.id: RunStatus.KILLED}
    ended = await store.finish_run(run.id, OWNER, RunOutcome(requested[run.id]))
    assert ended is not None
    assert ended.status is RunStatus.KILLED
    cleared = await store.get_message(behind.message.id)
    assert cleared is not None
    assert (cleared.fate, cleared.reason) == (Fate.DROPPED, DropReason.STOPPED)
    kept = await store.get_message(newer.message.id)
    assert kept is not None
    assert kept.fate is Fate.PENDING  # said after the stop: answered next


async def test_an_interrupt_request_keeps_the_queue(store: Store) -> None:
    run = await running(store)
    await say(store, "newer")
    result = await store.request_stop(run.session_id, RunStatus.INTERRUPTED, clear_queue=False)
    assert result.dropped == ()
    assert await store.claimable_sessions() == []  # still behind the active run


async def test_stop_refuses_a_status_that_is_not_a_stop(store: Store) -> None:
    run = await running(store)
    with pytest.raises(InvalidInput):
        await store.request_stop(run.session_id, RunStatus.DONE)


async def test_reset_archives_the_session_and_opens_a_fresh_one(store: Store) -> None:
    await store.set_model("s1", ModelRef("other", "model"))
    await store.set_queue("s1", QueuePatch(mode=QueueMode.STEER))
    run = await running(store, "old conversation")
    waiting = await say(store, "behind")

    result = await store.reset_session("s1")

    assert result.old.id == run.session_id
    assert result.old.archived_at is not None
    assert result.new.id != result.old.id
    assert (result.new.model, result.new.queue.mode) == (ModelRef("other", "model"),
                                                         QueueMode.STEER)
    assert result.stop.outcome is StopOutcome.SIGNALLED
    assert [m.reason for m in result.stop.dropped] == [DropReason.RESET]
    assert [m.id for m in result.stop.dropped] == [waiting.message.id]
    current = await store.get_session("s1")
    assert current is not None
    assert current.id == result.new.id
    assert [e.text for e in await store.transcript(result.old.id)] == ["old conversation"]
    assert await store.transcript(result.new.id) == []


async def test_reset_of_an_unknown_session_is_an_error(store: Store) -> None:
    with pytest.raises(UnknownSession):
        await store.reset_session("nobody")


async def test_the_old_owner_can_still_end_its_run_after_a_reset(store: Store) -> None:
    run = await running(store, "hi")
    await store.reset_session("s1")
    ended = await finish(store, run, reply="partial")
    assert ended is not None
    fresh = await say(store, "new topic")
    assert (await claim(store, fresh.session.id)).messages[0].text == "new topic"


async def test_recovery_ends_only_runs_whose_lease_expired(
    store: Store, clock: ManualClock
) -> None:
    run = await running(store)
    assert await store.recover_expired() == []
    clock.advance(LEASE.total_seconds() + 1)

    recovered = await store.recover_expired()

    assert [(r.id, r.status) for r in recovered] == [(run.id, RunStatus.INTERRUPTED)]
    assert recovered[0].error is not None
    assert "lease" in recovered[0].error


async def test_a_dead_owner_s_runs_are_recovered_at_once(store: Store) -> None:
    run = await running(store)
    other = await running(store, key="s2", owner="own_other")

    recovered = await store.recover_owner(OWNER, "its process exited")

    assert [r.id for r in recovered] == [run.id]
    still = await store.get_run(other.id)
    assert still is not None
    assert still.status is RunStatus.RUNNING


async def test_audit_finds_orphaned_runs_and_recovery_mends_them(
    store: Store, clock: ManualClock
) -> None:
    await running(store)
    assert await store.audit() == []
    clock.advance(LEASE.total_seconds() + 1)

    findings = await store.audit()

    assert [(f.code, f.fixable) for f in findings] == [("orphaned_run", True)]
    await store.recover_expired()
    assert await store.audit() == []


async def test_session_summaries_derive_status_from_the_latest_run(
    store: Store, clock: ManualClock
) -> None:
    run = await running(store, key="busy")
    done = await running(store, key="finished")
    await finish(store, done)
    clock.advance(1)
    await store.ensure_session("fresh")

    summaries = {s.session.key: s for s in await store.list_sessions()}

    assert summaries["busy"].latest_run is not None
    assert summaries["busy"].latest_run.id == run.id
    assert summaries["finished"].latest_run is not None
    assert summaries["finished"].latest_run.status is RunStatus.DONE
    assert summaries["fresh"].latest_run is None
    assert [s.session.key for s in await store.list_sessions(limit=1)] == ["fresh"]


async def test_field_level_session_changes_touch_only_their_field(store: Store) -> None:
    run = await running(store)
    await store.set_delivery("s1", Delivery("telegram", "chat-42"))
    await store.set_model("s1", ModelRef("echo", "fast"))
    await finish(store, run)

    session = await store.get_session("s1")
    assert session is not None
    assert session.delivery == Delivery("telegram", "chat-42")
    assert session.model == ModelRef("echo", "fast")
    transcript = await store.transcript(session.id)
    assert [e.role for e in transcript] == [Role.USER, Role.ASSISTANT]
