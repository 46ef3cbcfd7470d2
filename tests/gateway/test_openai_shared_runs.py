"""A request whose message shares a run with messages from elsewhere (collect and steer
modes): its client leaving does not stop the others' reply, and it is answered with its own
part of the reply."""

from __future__ import annotations

import asyncio

import openai
import pytest

from clawgate.domain import Fate, QueueMode, QueuePatch, Run
from clawgate.gateway.server import RunningGateway
from tests.gateway.openai_helpers import decided, inbound_count, latest_run

#: A long first message: the trickle model takes over a second to echo it.
LONG = " ".join(f"w{i}" for i in range(12))


async def _busy(gateway: RunningGateway, key: str, mode: QueueMode) -> str:
    """A session in ``mode`` whose reply to a web page's long message is streaming; its id."""
    await gateway.runtime.set_model(key, "trickle/echo")
    await gateway.runtime.set_queue(key, QueuePatch(mode=mode))
    first = await gateway.runtime.send(key, LONG, channel="webchat")
    await latest_run(gateway, first.session.id, "running")
    return first.session.id


async def _ended(gateway: RunningGateway, run_id: str) -> Run:
    for _ in range(200):  # bounded: 10 s
        run = await gateway.runtime.store.get_run(run_id)
        if run is not None and run.status.terminal:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


@pytest.mark.parametrize("mode", [QueueMode.COLLECT, QueueMode.STEER])
async def test_a_streaming_client_that_leaves_does_not_stop_a_reply_that_answers_others_too(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway, mode: QueueMode
) -> None:
    session_id = await _busy(gateway, "mia", mode)
    if mode is QueueMode.COLLECT:  # the page asks again: both are collected into one run
        await gateway.runtime.send("mia", "the page asks too", channel="webchat")
    chunks = await sdk.chat.completions.create(
        model="clawgate", stream=True, extra_headers={"X-Clawgate-Session": "mia"},
        messages=[{"role": "user", "content": "an aside over http"}])
    async for chunk in chunks:  # until the shared run writes its answer
        if chunk.choices and chunk.choices[0].delta.content:
            break

    await chunks.close()  # the HTTP client leaves

    mine = (await gateway.runtime.store.list_inbound(session_id))[-1]
    assert mine.run_id is not None
    run = await _ended(gateway, mine.run_id)
    assert (run.status, run.error) == ("done", None)  # the page's question is answered
    others = [m for m in await gateway.runtime.store.list_inbound(session_id)
              if m.run_id == run.id and m.id != mine.id]
    assert [m.channel for m in others] == ["webchat"]


async def test_a_streaming_client_that_leaves_while_its_message_waits_stops_nothing_else(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    """In collect mode: its message is withdrawn; the page's, waiting with it, is answered."""
    session_id = await _busy(gateway, "ned", QueueMode.COLLECT)
    page = await gateway.runtime.send("ned", "the page asks too", channel="webchat")
    chunks = await sdk.chat.completions.create(
        model="clawgate", stream=True, extra_headers={"X-Clawgate-Session": "ned"},
        messages=[{"role": "user", "content": "an aside over http"}])
    await anext(aiter(chunks))
    await inbound_count(gateway, session_id, 3)

    await chunks.close()

    mine = (await gateway.runtime.store.list_inbound(session_id))[-1]
    assert (await decided(gateway, mine.id)).fate is Fate.DROPPED
    answered = await decided(gateway, page.message.id)
    assert answered.run_id is not None
    assert (await _ended(gateway, answered.run_id)).status == "done"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_steered_message_is_answered_with_what_was_written_after_it(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway, stream: bool
) -> None:
    session_id = await _busy(gateway, "oda", QueueMode.STEER)
    asked = {"model": "clawgate", "extra_headers": {"X-Clawgate-Session": "oda"},
             "messages": [{"role": "user", "content": "steered words"}]}

    if stream:
        chunks = await sdk.chat.completions.create(stream=True, **asked)  # type: ignore[call-overload]
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        answer = await sdk.chat.completions.create(**asked)  # type: ignore[call-overload]
        text = answer.choices[0].message.content

    assert text == "echo: steered words"  # not the page's answer, nor the blank line between
    mine = (await gateway.runtime.store.list_inbound(session_id))[-1]
    assert mine.fate is Fate.MERGED  # steered into the page's run
    run = await gateway.runtime.store.get_run(mine.run_id or "")
    assert run is not None
    assert await gateway.runtime.store.run_reply(run.id) == (
        f"echo: {LONG}\n\necho: steered words")
