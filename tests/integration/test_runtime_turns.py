"""Turns through the runtime: replies, streaming, the four queue modes, errors, duplicates."""

from __future__ import annotations

import asyncio

from clawgate.domain import DropReason, Fate, QueueMode, Role, RunStatus, Usage
from clawgate.errors import ProviderFatal, ProviderUnavailable, RateLimited
from clawgate.runtime.bus import ReplyDelta, RunChanged, RuntimeEvent, Subscription
from tests.conformance.helpers import say
from tests.integration.harness import (
    LONG_QUIET,
    MANY,
    Harness,
    answer,
    eventually,
    in_quiet_time,
    mode,
)


async def test_a_message_is_answered_streamed_and_recorded(harness: Harness) -> None:
    runtime = await harness.runtime()
    events = runtime.subscribe("s1")
    accepted = await runtime.send("s1", "hello")

    call = await harness.model.next_call()
    assert call.request.messages[-1].content == "hello"
    call.delta("hi ")
    call.delta("there")
    call.finish(usage=Usage(7, 2))
    outcome = await runtime.wait_for(accepted.message.id, within=5)

    assert outcome.message.fate is Fate.ANSWERED
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    assert outcome.reply == "hi there"
    seen = [str(e.run.status) if isinstance(e, RunChanged) else e.text
            for e in await _published(events, outcome.run.id)
            if isinstance(e, RunChanged | ReplyDelta)]
    assert seen == ["queued", "running", "hi ", "there", "done"]
    session = await runtime.store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(7, 2)


async def _published(events: Subscription, run_id: str) -> list[RuntimeEvent]:
    """What the runtime published to ``events``, in order, up to ``run_id``'s end.

    The store may show the run ended a moment before its end is published: wait for it.
    """
    seen: list[RuntimeEvent] = []
    async with asyncio.timeout(5):
        while True:
            event = await events.queue.get()
            if event is None:
                return seen
            seen.append(event)
            if (isinstance(event, RunChanged) and event.run.id == run_id
                    and event.run.status.terminal):
                return seen


async def test_the_model_sees_the_conversation_so_far(harness: Harness) -> None:
    runtime = await harness.runtime()
    harness.model.queue_reply("first reply")
    await answer(runtime, "s1", "first")
    harness.model.queue_reply("second reply")
    await answer(runtime, "s1", "second")

    contents = [m.content for m in harness.model.calls[-1].request.messages]
    assert contents == ["first", "first reply", "second"]


async def test_followup_answers_each_waiting_message_in_its_own_turn(harness: Harness) -> None:
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", QueueMode.FOLLOWUP)
    first = await runtime.send("s1", "one")
    busy = await harness.model.next_call()
    second = await runtime.send("s1", "two")
    third = await runtime.send("s1", "three")
    busy.finish("r1")
    (await harness.model.next_call()).finish("r2")
    (await harness.model.next_call()).finish("r3")

    replies = [(await runtime.wait_for(m.message.id, within=5)).reply
               for m in (first, second, third)]
    assert replies == ["r1", "r2", "r3"]


async def test_collect_answers_waiting_messages_in_one_turn(harness: Harness) -> None:
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", QueueMode.COLLECT)
    await runtime.send("s1", "one")
    busy = await harness.model.next_call()
    second = await runtime.send("s1", "two")
    third = await runtime.send("s1", "three")
    busy.finish("r1")
    collected = await harness.model.next_call()
    collected.finish("both")

    assert [m.content for m in collected.request.messages[-2:]] == ["two", "three"]
    outcomes = [await runtime.wait_for(m.message.id, within=5) for m in (second, third)]
    assert [o.message.fate for o in outcomes] == [Fate.ANSWERED, Fate.MERGED]
    assert outcomes[0].run == outcomes[1].run
    assert outcomes[1].reply == "both"


async def test_steer_folds_a_message_into_the_running_turn(harness: Harness) -> None:
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", QueueMode.STEER)
    first = await runtime.send("s1", "write a poem")
    call = await harness.model.next_call()
    call.delta("Roses are red")
    steer = await runtime.send("s1", "make it about the sea")
    call.finish()
    follow_on = await harness.model.next_call()
    follow_on.finish("Waves are blue")

    outcome = await runtime.wait_for(steer.message.id, within=5)
    assert outcome.message.fate is Fate.MERGED
    assert outcome.run is not None
    assert outcome.run == (await runtime.wait_for(first.message.id)).run
    assert [m.content for m in follow_on.request.messages] == [
        "write a poem", "Roses are red", "make it about the sea"
    ]
    assert outcome.reply == "Roses are red\n\nWaves are blue"
    assert len(await runtime.store.list_runs(outcome.run.session_id)) == 1


async def test_steer_streams_exactly_the_reply_it_records(harness: Harness) -> None:
    """A watcher of the stream (the agent's output, the chat) reads the reply the transcript
    keeps, the break between two model calls included; a call with nothing to say adds
    none."""
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", QueueMode.STEER)
    events = runtime.subscribe("s1")
    await runtime.send("s1", "write a poem")
    call = await harness.model.next_call()
    call.delta("Roses are red")
    await runtime.send("s1", "make it about the sea")
    call.finish()
    silent = await harness.model.next_call()
    last = await runtime.send("s1", "shorter")
    silent.finish()
    final = await harness.model.next_call()
    final.delta("Waves ")
    final.finish("are blue")

    outcome = await runtime.wait_for(last.message.id, within=5)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    assert outcome.reply == "Roses are red\n\nWaves are blue"
    streamed = "".join(e.text for e in await _published(events, outcome.run.id)
                       if isinstance(e, ReplyDelta))
    assert streamed == outcome.reply


async def test_the_reply_so_far_is_what_is_not_yet_stored_and_where_it_ends(
    harness: Harness,
) -> None:
    """What a reader mid-reply (a reloaded web page) is given: the text the transcript does
    not hold yet, and where it ends in the streamed text, which each piece's offset places."""
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", QueueMode.STEER)
    events = runtime.subscribe("s1")
    first = await runtime.send("s1", "write a poem")
    session_id = first.message.session_id
    assert runtime.reply_so_far(session_id) is None  # not started
    call = await harness.model.next_call()
    call.delta("Roses are red")
    await runtime.send("s1", "make it about the sea")
    call.finish()
    follow_on = await harness.model.next_call()
    follow_on.delta("Waves ")

    async def said_waves() -> bool:
        so_far = runtime.reply_so_far(session_id)
        return so_far is not None and so_far.text == "Waves "
    await eventually(said_waves)
    so_far = runtime.reply_so_far(session_id)
    assert so_far is not None
    assert so_far.end == len("Roses are red\n\nWaves ")  # the first call's text is stored
    follow_on.finish("are blue")
    outcome = await runtime.wait_for(first.message.id, within=5)
    assert outcome.run is not None
    pieces = [e for e in await _published(events, outcome.run.id) if isinstance(e, ReplyDelta)]
    assert runtime.reply_so_far(session_id) is None
    assert [(e.offset, e.text) for e in pieces] == [
        (0, "Roses are red"), (13, "\n\nWaves "), (21, "are blue")]
    assert outcome.reply == "Roses are red\n\nWaves are blue"


async def test_interrupt_stops_the_turn_and_answers_the_newest(harness: Harness) -> None:
    runtime = await harness.runtime()
    await mode(runtime.store, "s1", QueueMode.INTERRUPT)
    first = await runtime.send("s1", "long question")
    call = await harness.model.next_call()
    call.delta("Let me think")
    middle = await runtime.send("s1", "actually")
    newest = await runtime.send("s1", "never mind, what time is it?")
    (await harness.model.next_call()).finish("noon")

    interrupted = await runtime.wait_for(first.message.id, within=5)
    assert interrupted.run is not None
    assert interrupted.run.status is RunStatus.INTERRUPTED
    assert interrupted.reply == "Let me think"
    dropped = await runtime.wait_for(middle.message.id, within=5)
    assert (dropped.message.fate, dropped.message.reason) == (Fate.DROPPED,
                                                              DropReason.SUPERSEDED)
    assert (await runtime.wait_for(newest.message.id, within=5)).reply == "noon"
    assert call.closed


async def test_a_provider_error_fails_the_run_and_the_session_carries_on(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    failing = await runtime.send("s1", "hello")
    (await harness.model.next_call()).fail(ProviderUnavailable("overloaded", provider="scripted"))
    (await harness.model.next_call()).fail(ProviderFatal("bad request", provider="scripted"))
    outcome = await runtime.wait_for(failing.message.id, within=5)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.FAILED
    assert outcome.run.error == "scripted: bad request"
    harness.model.queue_reply("fine now")
    assert (await answer(runtime, "s1", "again")).reply == "fine now"


async def test_a_rate_limited_model_rests_and_then_answers_again(harness: Harness) -> None:
    runtime = await harness.runtime()
    limited = await runtime.send("s1", "hello")
    (await harness.model.next_call()).fail(RateLimited("slow down", provider="scripted",
                                                       retry_after=90))
    first = await runtime.wait_for(limited.message.id, within=5)
    assert first.run is not None
    assert first.run.error == "scripted: slow down (retry after 90s)"

    resting = await answer(runtime, "s1", "are you there?")  # no call is made meanwhile
    assert resting.run is not None
    assert resting.run.status is RunStatus.FAILED
    assert "resting after failures" in (resting.run.error or "")
    assert len(harness.model.calls) == 1

    harness.clock.advance(91)
    harness.model.queue_reply("rested")
    assert (await answer(runtime, "s1", "now?")).reply == "rested"
    assert await runtime.store.cooldowns() == []  # an answer forgives


async def test_a_model_on_an_unknown_provider_fails_with_a_clear_error(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    from clawgate.domain import ModelRef

    await runtime.store.set_model("s1", ModelRef("nowhere", "x"))
    outcome = await answer(runtime, "s1", "hello")
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.FAILED
    assert "no provider named 'nowhere'" in (outcome.run.error or "")


async def test_a_redelivered_message_is_answered_once(harness: Harness) -> None:
    runtime = await harness.runtime()
    harness.model.queue_reply("only once")
    first = await runtime.send("s1", "hi", channel="telegram", channel_message_id="u-1")
    again = await runtime.send("s1", "hi", channel="telegram", channel_message_id="u-1")
    assert again.duplicate
    assert again.message.id == first.message.id
    await runtime.wait_for(first.message.id, within=5)
    await asyncio.sleep(0.05)
    assert len(harness.model.calls) == 1
    transcript = await runtime.store.transcript(first.session.id)
    assert [e.role for e in transcript] == [Role.USER, Role.ASSISTANT]


async def test_two_processes_on_one_session_answer_one_after_the_other(
    harness: Harness,
) -> None:
    one, two = await harness.runtime(), await harness.runtime()
    await mode(one.store, "s1", QueueMode.FOLLOWUP)
    first = await one.send("s1", "from one")
    call = await harness.model.next_call()
    second = await two.send("s1", "from two")
    await asyncio.sleep(0.05)
    assert harness.model.open_calls() == [call]  # the second waits its turn
    call.finish("answer one")
    (await harness.model.next_call()).finish("answer two")

    assert (await one.wait_for(first.message.id, within=5)).reply == "answer one"
    assert (await two.wait_for(second.message.id, within=5)).reply == "answer two"

    async def both_idle() -> bool:
        return not [r for r in await one.store.active_runs()]

    await eventually(both_idle)


async def test_an_idle_process_answers_a_message_another_process_left_waiting(
    harness: Harness,
) -> None:
    serving = await harness.runtime()
    await asyncio.sleep(0.1)  # ten poll intervals: it has looked, found nothing, and waits
    other = await harness.backend.handle()  # a process that accepts but does not answer

    accepted = await say(other, "answer me, whoever you are")

    (await harness.model.next_call()).finish("answered by the idle one")
    outcome = await serving.wait_for(accepted.message.id, within=5)
    assert outcome.reply == "answered by the idle one"
    assert outcome.run is not None
    assert outcome.run.owner_id == serving.owner.id


async def test_many_sessions_waiting_out_their_quiet_time_hide_no_other_waiting_message(
    harness: Harness,
) -> None:
    serving = await harness.runtime(queue=LONG_QUIET)
    for n in range(MANY):  # more than a look for waiting work lists
        await in_quiet_time(harness, serving, f"w{n:03}")
    other = await harness.backend.handle()  # a process that accepts but does not answer

    accepted = await say(other, "answer me too", key="latecomer")

    (await harness.model.next_call()).finish("answered")
    outcome = await serving.wait_for(accepted.message.id, within=5)
    assert outcome.reply == "answered"
