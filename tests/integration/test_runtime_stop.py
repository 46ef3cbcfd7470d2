"""Stop always works; timeouts end runs; crashes and stalls never wedge a session."""

from __future__ import annotations

import asyncio
import time

import pytest

from clawgate.domain import (
    Delivery,
    Fate,
    ModelRef,
    NewInbound,
    QueueMode,
    QueuePatch,
    QueueSettings,
    Role,
    RunStatus,
)
from clawgate.runtime.bus import RunChanged, Subscription
from clawgate.runtime.runtime import STOPPED_COMPACTING, CommandReply, Runtime
from clawgate.store.protocol import Store
from tests.integration.harness import SETTINGS, Harness, answer, eventually, mode


async def _status(store: Store, run_id: str) -> RunStatus:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


async def test_stop_kills_a_hanging_run_at_once_and_closes_the_model_call(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    accepted = await runtime.send("s1", "tell me a story")
    call = await harness.model.next_call()
    call.delta("Once upon")
    waiting = await runtime.send("s1", "and another")

    started = time.monotonic()
    report = await runtime.stop("s1")
    elapsed = time.monotonic() - started

    assert report.confirmed
    assert report.final is not None
    assert report.final.status is RunStatus.KILLED
    assert elapsed < 1.0
    assert call.closed
    assert "dropped 1 waiting message" in report.describe()
    outcome = await runtime.wait_for(accepted.message.id)
    assert outcome.reply == "Once upon"
    transcript = await runtime.store.transcript(accepted.session.id)
    assert (transcript[-1].role, transcript[-1].stopped) == (Role.ASSISTANT, True)
    cleared = await runtime.wait_for(waiting.message.id)
    assert cleared.message.fate is Fate.DROPPED


async def test_stop_from_another_process_reaches_the_owner_within_a_second(
    harness: Harness,
) -> None:
    owner = await harness.runtime()
    other = await harness.runtime()
    accepted = await owner.send("s1", "hang")
    call = await harness.model.next_call()

    started = time.monotonic()
    report = await other.stop("s1")

    assert time.monotonic() - started < 1.0
    assert report.final is not None
    assert report.final.status is RunStatus.KILLED
    assert call.closed
    assert (await owner.wait_for(accepted.message.id, within=2)).run is not None


async def test_stop_with_nothing_running_says_so(harness: Harness) -> None:
    runtime = await harness.runtime()
    harness.model.queue_reply("hi")
    await answer(runtime, "s1", "hello")
    report = await runtime.stop("s1")
    assert report.final is None
    assert report.describe() == "nothing was running in session s1; no messages were waiting"


async def test_stop_ends_a_compaction_and_the_compaction_says_so(harness: Harness) -> None:
    runtime = await harness.runtime()
    harness.model.queue_reply("hi")
    await answer(runtime, "s1", "hello")
    compacting = asyncio.create_task(runtime.handle("s1", "/compact"))
    call = await harness.model.next_call()  # the summary is asked for, and never comes

    report = await runtime.stop("s1")

    assert report.describe() == "stopped compacting session s1; no messages were waiting"
    reply = await compacting
    assert isinstance(reply, CommandReply)
    assert reply.text == STOPPED_COMPACTING
    assert call.closed
    session = await runtime.store.get_session("s1")
    assert session is not None
    transcript = await runtime.store.transcript(session.id)
    assert [e.role for e in transcript] == [Role.USER, Role.ASSISTANT]  # no summary


async def test_a_run_past_its_deadline_ends_timeout(harness: Harness) -> None:
    runtime = await harness.runtime(supervise=False)
    accepted = await runtime.send("s1", "slow")
    call = await harness.model.next_call()
    harness.clock.advance(599)
    await runtime.tick()
    assert not call.closed
    harness.clock.advance(2)
    await runtime.tick()

    outcome = await runtime.wait_for(accepted.message.id, within=2)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.TIMEOUT
    assert outcome.run.error == "timed out after 600s"
    assert call.closed


async def test_a_crashed_owner_s_run_is_recovered_and_the_session_answers_again(
    harness: Harness,
) -> None:
    doomed = await harness.runtime(supervise=False)
    lost = await doomed.send("s1", "mid-run when the process dies")
    await harness.model.next_call()
    await harness.crash(doomed)
    survivor = await harness.runtime(supervise=False)
    waiting = await survivor.send("s1", "anyone there?")
    await survivor.tick()
    assert await survivor.store.claimable_sessions() == []  # the lease still holds

    harness.clock.advance(16)
    await survivor.tick()
    harness.model.queue_reply("yes")
    await survivor.tick()

    assert (await survivor.wait_for(waiting.message.id, within=3)).reply == "yes"
    old = await survivor.wait_for(lost.message.id)
    assert old.run is not None
    assert old.run.status is RunStatus.INTERRUPTED
    assert "lease" in (old.run.error or "")
    assert await survivor.store.audit() == []


async def test_a_stalled_owner_cannot_write_after_a_takeover(harness: Harness) -> None:
    stalled = await harness.runtime(supervise=False)
    first = await stalled.send("s1", "first")
    slow_call = await harness.model.next_call()
    harness.clock.advance(16)  # the stalled owner missed its renewals
    other = await harness.runtime(supervise=False)
    second = await other.send("s1", "second")
    await other.tick()
    taken_over = await harness.model.next_call()

    slow_call.finish("too late")  # the stalled owner wakes up and tries to record its reply
    outcome = await stalled.wait_for(first.message.id, within=3)
    taken_over.finish("on time")

    assert outcome.run is not None
    assert outcome.run.status is RunStatus.INTERRUPTED
    assert (await other.wait_for(second.message.id, within=3)).reply == "on time"
    texts = [e.text for e in await other.store.transcript(outcome.run.session_id)]
    assert "too late" not in texts


async def test_shutdown_lets_a_turn_finish_within_the_grace_period(harness: Harness) -> None:
    runtime = await harness.runtime()
    accepted = await runtime.send("s1", "quick one")
    call = await harness.model.next_call()
    closing = asyncio.create_task(runtime.close(grace=2))
    await asyncio.sleep(0.05)
    call.finish("made it")
    await closing
    run = (await runtime.store.list_runs(accepted.session.id))[-1]
    assert run.status is RunStatus.DONE


async def test_shutdown_interrupts_a_turn_that_outlasts_the_grace_period(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    accepted = await runtime.send("s1", "hang")
    call = await harness.model.next_call()
    call.delta("partial")
    await runtime.close(grace=0.05)

    run = (await runtime.store.list_runs(accepted.session.id))[-1]
    assert run.status is RunStatus.INTERRUPTED
    assert "shut down" in (run.error or "")
    assert await runtime.store.run_reply(run.id) == "partial"
    assert call.closed


async def test_shutdown_leaves_no_run_of_its_own_active(harness: Harness) -> None:
    runtime = await harness.runtime(supervise=False)
    await runtime.send("s1", "hello")
    await harness.model.next_call()
    # Another run this process claimed but never started (its lane was cut off mid-claim):
    await runtime.store.accept_inbound("s2", NewInbound("cli", "orphan"), SETTINGS.queue)
    session = await runtime.store.get_session("s2")
    assert session is not None
    orphan = await runtime.store.claim_next(session.id, runtime.owner.id, SETTINGS.lease,
                                            SETTINGS.queue)
    assert orphan is not None

    await runtime.close(grace=0)

    assert await runtime.store.active_runs() == []


@pytest.mark.parametrize("queue_mode", [QueueMode.FOLLOWUP, QueueMode.COLLECT,
                                        QueueMode.STEER])
async def test_a_message_waiting_at_shutdown_is_kept_and_answered_once_after_a_restart(
    harness: Harness, queue_mode: QueueMode,
) -> None:
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", queue_mode)
    first = await runtime.send("s1", "first")
    call = await harness.model.next_call()
    waiting = await runtime.send("s1", "second")  # waits its turn behind the reply
    closing = asyncio.create_task(runtime.close(grace=3))
    await asyncio.sleep(0)  # the shutdown has begun
    call.finish("answer one")
    await closing

    await _answered_once_after_a_restart(harness, first.message.id, waiting.message.id)


async def test_a_message_in_its_debounce_time_at_shutdown_is_kept_for_the_restart(
    harness: Harness,
) -> None:
    runtime = await harness.runtime(queue=QueueSettings(debounce_ms=500))
    events = runtime.subscribe("s1")
    first = await runtime.send("s1", "first")
    call = await harness.model.next_call()
    waiting = await runtime.send("s1", "second")  # collected, after 500 ms of quiet
    harness.clock.advance(0.1)
    call.finish("answer one")  # "second" came during the reply: its quiet time runs now
    await _run_ended(events)
    # The lane looked for more work as that run ended, before anything else this store
    # handle is asked (it serves calls in order): "second" is in its quiet time.
    await runtime.store.renew_leases(runtime.owner.id, frozenset(), SETTINGS.lease)
    closing = asyncio.create_task(runtime.close(grace=3))
    await asyncio.sleep(0)  # the shutdown has begun
    harness.clock.advance(1)  # then the quiet time is over, within the grace period
    await closing

    await _answered_once_after_a_restart(harness, first.message.id, waiting.message.id)


async def _run_ended(events: Subscription) -> None:
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, RunChanged) and event.run.status.terminal:
                return


async def _answered_once_after_a_restart(
    harness: Harness, first_id: str, waiting_id: str,
) -> None:
    """The first message was answered before the shutdown; the waiting one is still waiting
    (no run was started for it, none was cut short), and the next runtime answers it."""
    store = harness.runtimes[0].store
    kept = await store.get_message(waiting_id)
    assert kept is not None
    assert (kept.fate, kept.run_id) == (Fate.PENDING, None)
    assert len(harness.model.calls) == 1

    harness.model.queue_reply("answer two")
    restarted = await harness.runtime()
    outcome = await restarted.wait_for(waiting_id, within=5)

    assert outcome.message.fate is Fate.ANSWERED
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    assert outcome.reply == "answer two"
    runs = await store.list_runs(kept.session_id)
    assert [r.status for r in runs] == [RunStatus.DONE, RunStatus.DONE]
    replies = [e.text for e in await store.transcript(kept.session_id)
               if e.role is Role.ASSISTANT]
    assert replies == ["answer one", "answer two"]
    answered_first = await store.get_message(first_id)
    assert answered_first is not None
    assert answered_first.run_id == runs[0].id


async def test_reset_during_a_run_stops_it_and_the_new_session_answers(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    old = await runtime.send("s1", "old topic")
    call = await harness.model.next_call()

    result = await runtime.reset("s1")

    await eventually(lambda: _is(runtime.store, old.message.id, RunStatus.KILLED))
    assert call.closed
    harness.model.queue_reply("fresh start")
    fresh = await answer(runtime, "s1", "new topic")
    assert fresh.reply == "fresh start"
    assert fresh.message.session_id == result.new.id
    assert [m.content for m in harness.model.calls[-1].request.messages] == ["new topic"]


async def _is(store: Store, message_id: str, status: RunStatus) -> bool:
    message = await store.get_message(message_id)
    return (message is not None and message.run_id is not None
            and await _status(store, message.run_id) is status)


async def _session_updates_from_stale_state(runtime: Runtime, order: list[str]) -> None:
    stale = await runtime.status("s1")  # read while the run was still going
    key = stale.key
    for step in order:
        if step == "model":
            await runtime.set_model(key, ModelRef("scripted", "m2"))
        elif step == "delivery":
            await runtime.store.set_delivery(key, Delivery("telegram", "42"))
        elif step == "queue":
            await runtime.store.set_queue(key, QueuePatch(mode=QueueMode.FOLLOWUP))


async def test_the_openclaw_sequence_through_the_runtime(harness: Harness) -> None:
    runtime = await harness.runtime()
    orders = [["model", "delivery", "queue"], ["queue", "model", "delivery"]]
    for finish_first in (True, False):
        for order in orders:
            accepted = await runtime.send("s1", "hello")
            call = await harness.model.next_call()
            updates = asyncio.create_task(_session_updates_from_stale_state(runtime, order))
            if finish_first:
                call.finish("hi")
                await updates
            else:
                await updates
                call.finish("hi")
            await runtime.wait_for(accepted.message.id, within=3)
            status = await runtime.status("s1")
            assert status.summary is not None
            assert status.summary.latest_run is not None
            assert status.summary.latest_run.status is RunStatus.DONE
            harness.model.queue_reply("still here")
            assert (await answer(runtime, "s1", "next")).reply == "still here"


async def test_a_new_chat_answers_commands_before_its_first_message(harness: Harness) -> None:
    runtime = await harness.runtime()

    replies = [await runtime.handle("fresh-key-1", text)
               for text in ("/status", "stop", "/stop", "/new", "/queue")]
    ctrl_c = await runtime.stop("fresh-key-1")  # what Ctrl-C in a chat does

    assert all(isinstance(r, CommandReply) for r in replies)
    status, stop, slash_stop, new, queue = [r.text for r in replies
                                            if isinstance(r, CommandReply)]
    assert "model     scripted/m1" in status
    assert "run       none yet" in status
    assert stop == slash_stop == (
        "session fresh-key-1 has no conversation yet: nothing was running")
    assert new == ("session 'fresh-key-1' has no conversation yet; your next message starts "
                   "a fresh one")
    assert queue.startswith("collect (debounce 0 ms")
    assert (ctrl_c.final, ctrl_c.confirmed) == (None, True)
    assert await runtime.store.list_sessions() == []  # nothing was created
