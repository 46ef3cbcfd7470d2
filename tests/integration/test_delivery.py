"""Replies reach a pushing channel through the outbox, through outages and crashes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from clawgate.domain import DeliveryStatus
from clawgate.runtime.runtime import Runtime
from clawgate.testing import RecordingSender
from tests.integration.harness import SETTINGS, Harness, eventually


async def _runtime(harness: Harness, sender: RecordingSender) -> Runtime:
    store = await harness.backend.handle()
    runtime = Runtime(store, {"scripted": harness.model}, SETTINGS, senders=[sender])
    await runtime.start()
    harness.runtimes.append(runtime)
    return runtime


async def test_the_reply_is_pushed_to_where_the_message_came_from(harness: Harness) -> None:
    sender = RecordingSender()
    runtime = await _runtime(harness, sender)
    harness.model.queue_reply("hello back")
    accepted = await runtime.send("s1", "hello", channel="chatapp", reply_to="chat-9")
    await runtime.wait_for(accepted.message.id, within=5)

    async def sent() -> bool:
        return bool(sender.sent)

    await eventually(sent)
    assert sender.sent == [("chat-9", "hello back")]


async def test_a_sender_that_breaks_is_retried_and_holds_up_no_other_reply(
    harness: Harness,
) -> None:
    sender = RecordingSender()
    sender.break_next()
    runtime = await _runtime(harness, sender)
    harness.model.queue_reply("first")
    harness.model.queue_reply("second")
    one = await runtime.send("s1", "a", channel="chatapp", reply_to="chat-1")
    two = await runtime.send("s2", "b", channel="chatapp", reply_to="chat-2")
    for accepted in (one, two):
        await runtime.wait_for(accepted.message.id, within=5)

    async def other_sent() -> bool:
        return len(sender.sent) == 1

    await eventually(other_sent)  # the pass went on after the broken send
    [broken] = await runtime.store.list_outbox(
        (one if sender.sent[0][0] == "chat-2" else two).session.id)
    assert broken.status is DeliveryStatus.PENDING
    assert "the chatapp sender failed: KeyError" in (broken.last_error or "")
    harness.clock.advance(2)
    await runtime.tick()

    async def both_sent() -> bool:
        return len(sender.sent) == 2

    await eventually(both_sent)
    assert {target for target, _ in sender.sent} == {"chat-1", "chat-2"}
    assert {text for _, text in sender.sent} == {"first", "second"}


async def test_an_outage_delays_the_reply_but_does_not_drop_it(harness: Harness) -> None:
    sender = RecordingSender()
    sender.fail_next(3)
    runtime = await _runtime(harness, sender)
    harness.model.queue_reply("patience")
    accepted = await runtime.send("s1", "hello", channel="chatapp", reply_to="chat-9")
    await runtime.wait_for(accepted.message.id, within=5)
    for attempt in (1, 2, 3):  # each retry waits longer: 1 s, 2 s, 4 s

        async def tried(n: int = attempt) -> bool:
            return await _attempted(runtime, accepted.session.id, n)

        await eventually(tried)
        harness.clock.advance(2 ** (attempt - 1))
        await runtime.tick()

    async def recorded() -> bool:
        items = await runtime.store.list_outbox(accepted.session.id)
        return items[0].status is DeliveryStatus.DELIVERED

    await eventually(recorded)
    assert sender.sent == [("chat-9", "patience")]
    [item] = await runtime.store.list_outbox(accepted.session.id)
    assert item.attempts == 4


async def _attempted(runtime: Runtime, session_id: str, attempts: int) -> bool:
    """The reply has been tried ``attempts`` times and the failure is recorded."""
    items = await runtime.store.list_outbox(session_id)
    return bool(items) and items[0].attempts == attempts and items[0].last_error is not None


async def test_a_reply_claimed_by_a_process_that_died_is_delivered_by_another(
    harness: Harness,
) -> None:
    doomed_store = await harness.backend.handle()
    harness.model.queue_reply("still arrives")
    writer = await _runtime(harness, RecordingSender(channel="nobody-sends-this"))
    accepted = await writer.send("s1", "hello", channel="chatapp", reply_to="chat-9")
    await writer.wait_for(accepted.message.id, within=5)
    [claimed] = await doomed_store.take_deliveries("chatapp", lease=timedelta(seconds=60))
    await doomed_store.close()  # it took the reply and died before sending it

    sender = RecordingSender()
    other = await _runtime(harness, sender)
    await other.tick()
    assert sender.sent == []  # the dead sender's claim still holds
    harness.clock.advance(61)
    await other.tick()

    async def delivered() -> bool:
        return sender.sent == [("chat-9", "still arrives")]

    await eventually(delivered)
    assert claimed.text == "still arrives"


async def test_a_permanent_refusal_is_recorded_and_not_retried(harness: Harness) -> None:
    sender = RecordingSender()
    sender.reject_next()
    runtime = await _runtime(harness, sender)
    harness.model.queue_reply("nobody home")
    accepted = await runtime.send("s1", "hello", channel="chatapp", reply_to="gone")
    await runtime.wait_for(accepted.message.id, within=5)

    async def refused() -> bool:
        items = await runtime.store.list_outbox(accepted.session.id)
        return bool(items) and items[0].status is DeliveryStatus.REJECTED

    await eventually(refused)
    harness.clock.advance(3600)
    await runtime.tick()
    await asyncio.sleep(0.05)
    assert sender.attempts == 1

