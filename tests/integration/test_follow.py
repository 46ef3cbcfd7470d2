"""A session followed as a chat follows it: every reply whole, whoever answered it, however
far behind the follower fell."""

from __future__ import annotations

import asyncio

from clawgate.runtime.bus import MessageDecided, ReplyDelta, RunChanged, RuntimeEvent
from clawgate.runtime.follow import SessionFollower
from clawgate.runtime.runtime import Runtime
from tests.integration.harness import Harness, eventually


async def _follow(runtime: Runtime, key: str, bus_queue: int = 1000) -> SessionFollower:
    return SessionFollower(runtime.store, runtime.bus, runtime.owner.id, key,
                           runtime.settings.poll_interval,
                           after=await runtime.store.last_event_seq(), bus_queue=bus_queue)


def _replies(events: list[RuntimeEvent]) -> list[tuple[str, str]]:
    """Each run told ended, with the text told for it before, in order."""
    text: dict[str, str] = {}
    ended = []
    for event in events:
        if isinstance(event, ReplyDelta):
            text[event.run_id] = text.get(event.run_id, "") + event.text
        elif isinstance(event, RunChanged) and event.run.status.terminal:
            ended.append((text.pop(event.run.id, ""), str(event.run.status)))
    return ended


async def _answer(harness: Harness, runtime: Runtime, text: str, pieces: list[str]) -> None:
    accepted = await runtime.send("s1", text)
    call = await harness.model.next_call()
    for piece in pieces:
        call.delta(piece)
    call.finish()
    await runtime.wait_for(accepted.message.id, within=5)


async def test_a_follower_that_falls_behind_the_bus_still_tells_every_reply_whole(
    harness: Harness,
) -> None:
    runtime = await harness.runtime()
    follower = await _follow(runtime, "s1", bus_queue=2)
    told: list[RuntimeEvent] = []
    reading = asyncio.Event()
    blocked = asyncio.Event()

    async def read() -> None:  # a reader that stops reading after the first event, a while
        async for event in follower:
            told.append(event)
            reading.set()
            await blocked.wait()

    reader = asyncio.create_task(read())
    first = await runtime.send("s1", "one")
    await reading.wait()  # the first run's first event: then the reader stops
    call = await harness.model.next_call()
    for n in range(50):  # far more than the reader's queue of 2 holds
        call.delta(f"p{n} ")
    call.finish()
    await runtime.wait_for(first.message.id, within=5)
    await _answer(harness, runtime, "two", ["second ", "reply"])
    blocked.set()
    await eventually(lambda: _settled(told, 2))
    follower.close()
    await asyncio.wait_for(reader, 5)

    assert _replies(told) == [("".join(f"p{n} " for n in range(50)), "done"),
                              ("second reply", "done")]


async def _settled(told: list[RuntimeEvent], runs: int) -> bool:
    return len(_replies(told)) >= runs


async def test_what_another_process_does_is_told_replies_whole(harness: Harness) -> None:
    here = await harness.runtime(supervise=False)  # (it answers nothing here)
    elsewhere = await harness.runtime()
    follower = await _follow(here, "s1")
    told: list[RuntimeEvent] = []

    async def read() -> None:
        async for event in follower:
            told.append(event)

    reader = asyncio.create_task(read())
    await _answer(harness, elsewhere, "hi", ["hello ", "there"])
    await elsewhere.send("s1", "busy")
    await harness.model.next_call()  # (never answered)
    waiting = await elsewhere.send("s1", "waiting")
    await elsewhere.stop("s1")  # drops the waiting message, elsewhere
    await eventually(lambda: _settled(told, 2))
    follower.close()
    await asyncio.wait_for(reader, 5)

    assert _replies(told) == [("hello there", "done"), ("", "killed")]
    dropped = [e.message.id for e in told if isinstance(e, MessageDecided)]
    assert dropped == [waiting.message.id]
