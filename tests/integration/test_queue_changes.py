"""Changing a session's queue settings while messages wait, or while a reply is written."""

from __future__ import annotations

import pytest

from clawgate.domain import (
    DropPolicy,
    QueueMode,
    QueuePatch,
    QueueSettings,
    RunStatus,
)
from clawgate.store.protocol import Store
from tests.integration.harness import LONG_QUIET, MANY, SETTINGS, Harness, answer, in_quiet_time

CHANGES = [QueuePatch(debounce_ms=0), QueuePatch(mode=QueueMode.INTERRUPT)]


@pytest.mark.parametrize("change", CHANGES, ids=["debounce:0", "interrupt"])
async def test_a_queue_change_reaches_a_message_already_in_its_quiet_time(
    harness: Harness, change: QueuePatch,
) -> None:
    runtime = await harness.runtime(queue=LONG_QUIET)
    waiting = await in_quiet_time(harness, runtime)

    await runtime.set_queue("s1", change)  # "never waits" holds from now on
    (await harness.model.next_call()).finish("r2")

    outcome = await runtime.wait_for(waiting, within=5)
    assert outcome.reply == "r2"


async def test_a_queue_change_made_by_another_process_reaches_the_quiet_time(
    harness: Harness,
) -> None:
    runtime = await harness.runtime(queue=LONG_QUIET)
    waiting = await in_quiet_time(harness, runtime)
    elsewhere = await harness.backend.handle()  # `clawgate` in another terminal, say

    await elsewhere.set_queue("s1", QueuePatch(debounce_ms=0))
    (await harness.model.next_call()).finish("r2")

    outcome = await runtime.wait_for(waiting, within=5)
    assert outcome.reply == "r2"


async def test_a_queue_change_made_elsewhere_reaches_any_of_many_sessionsin_quiet_time(
    harness: Harness,
) -> None:
    runtime = await harness.runtime(queue=LONG_QUIET)
    waiting = {key: await in_quiet_time(harness, runtime, key)
               for key in (f"w{n:03}" for n in range(MANY))}
    elsewhere = await harness.backend.handle()
    # One that a look for waiting work does not list (it lists at most 100, in one order).
    listed = set(await elsewhere.claimable_sessions())
    ids = {key: await _id(elsewhere, key) for key in waiting}
    key = next(key for key in reversed(waiting) if ids[key] not in listed)

    await elsewhere.set_queue(key, QueuePatch(debounce_ms=0))
    (await harness.model.next_call()).finish("at once")

    outcome = await runtime.wait_for(waiting[key], within=5)
    assert outcome.reply == "at once"


async def _id(store: Store, key: str) -> str:
    session = await store.get_session(key)
    assert session is not None
    return session.id


async def test_stop_clears_the_summary_of_messages_the_full_queue_dropped(
    harness: Harness,
) -> None:
    runtime = await harness.runtime(queue=QueueSettings(
        mode=QueueMode.COLLECT, debounce_ms=0, cap=1, drop=DropPolicy.SUMMARIZE))
    await runtime.send("s1", "one")
    await harness.model.next_call()
    for text in ("a", "b", "c"):  # "a" and "b" are dropped, to be summarized
        await runtime.send("s1", text)

    report = await runtime.stop("s1")
    harness.model.queue_reply("r2")
    await answer(runtime, "s1", "next question")

    assert ("dropped 1 waiting message (and the summary of 2 messages the full queue "
            "dropped earlier)") in report.describe()
    seen = [m.content for m in harness.model.calls[-1].request.messages]
    assert seen == ["one", "next question"]  # told nothing of "a" and "b"


async def test_a_message_handed_to_a_steered_reply_stays_with_it_after_a_mode_change(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    await runtime.set_queue("s1", QueuePatch(mode=QueueMode.STEER))
    first = await runtime.send("s1", "write a poem")
    call = await harness.model.next_call()
    steered = await runtime.send("s1", "make it about the sea")
    await runtime.set_queue("s1", QueuePatch(mode=QueueMode.FOLLOWUP))  # for the next reply
    call.finish("Roses are red")
    (await harness.model.next_call()).finish("Waves are blue")

    outcome = await runtime.wait_for(steered.message.id, within=5)
    assert steered.queue_mode(SETTINGS.queue) is QueueMode.STEER  # "handed to the reply"
    assert outcome.run == (await runtime.wait_for(first.message.id)).run
    assert outcome.reply == "Roses are red\n\nWaves are blue"


async def test_a_switch_to_steer_during_a_reply_holds_from_the_next_reply(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    await runtime.set_queue("s1", QueuePatch(mode=QueueMode.COLLECT))
    first = await runtime.send("s1", "write a poem")
    call = await harness.model.next_call()
    await runtime.set_queue("s1", QueuePatch(mode=QueueMode.STEER))
    later = await runtime.send("s1", "and a song")
    call.finish("Roses are red")
    (await harness.model.next_call()).finish("La la la")

    outcome = await runtime.wait_for(later.message.id, within=5)
    assert later.queue_mode(SETTINGS.queue) is QueueMode.COLLECT  # "queued", as it is
    assert outcome.run != (await runtime.wait_for(first.message.id)).run
    assert outcome.reply == "La la la"


async def test_a_reply_started_in_interrupt_mode_is_interrupted_after_a_mode_change(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    await runtime.set_queue("s1", QueuePatch(mode=QueueMode.INTERRUPT))
    first = await runtime.send("s1", "write a poem")
    await harness.model.next_call()
    await runtime.set_queue("s1", QueuePatch(mode=QueueMode.FOLLOWUP))
    newer = await runtime.send("s1", "no, a song")
    (await harness.model.next_call()).finish("La la la")

    cut = await runtime.wait_for(first.message.id, within=5)
    assert newer.queue_mode(SETTINGS.queue) is QueueMode.INTERRUPT
    assert cut.run is not None
    assert cut.run.status is RunStatus.INTERRUPTED
    assert (await runtime.wait_for(newer.message.id, within=5)).reply == "La la la"
