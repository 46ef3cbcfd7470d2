"""The outbox: replies for pushing channels are recorded with the reply and delivered in order."""

from __future__ import annotations

from datetime import timedelta

from clawgate.domain import DeliveryStatus, NewInbound, RunOutcome, RunStatus
from clawgate.store.protocol import Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import ECHO, FOLLOWUP, OWNER, claim, finish

LEASE = timedelta(seconds=60)


async def _pushed_turn(store: Store, text: str, reply: str = "hi back",
                       status: RunStatus = RunStatus.DONE, target: str = "chat-1") -> str:
    accepted = await store.accept_inbound(
        "s1", NewInbound(channel="chatapp", text=text, reply_to=target), FOLLOWUP)
    run = (await claim(store, accepted.session.id)).run
    await store.start_run(run.id, OWNER, ECHO, store.clock.now() + timedelta(seconds=60))
    await store.finish_run(run.id, OWNER, RunOutcome(status, reply, error="boom"))
    return accepted.session.id


async def test_a_reply_for_a_pushing_channel_is_queued_with_its_target(store: Store) -> None:
    session_id = await _pushed_turn(store, "hello")
    session = await store.get_session("s1")
    assert session is not None
    assert session.delivery is not None
    assert (session.delivery.channel, session.delivery.target) == ("chatapp", "chat-1")
    [item] = await store.list_outbox(session_id)
    assert (item.channel, item.target, item.text, item.status) == (
        "chatapp", "chat-1", "hi back", DeliveryStatus.PENDING)


async def test_sessions_without_a_target_queue_nothing(store: Store) -> None:
    accepted = await store.accept_inbound("s1", NewInbound("cli", "hi"), FOLLOWUP)
    await finish(store, (await claim(store, accepted.session.id)).run)
    assert await store.list_outbox(accepted.session.id) == []


async def test_a_taken_reply_is_not_taken_again_until_its_claim_lapses(
    store: Store, clock: ManualClock
) -> None:
    await _pushed_turn(store, "hello")
    [taken] = await store.take_deliveries("chatapp", LEASE)
    assert taken.attempts == 1
    assert await store.take_deliveries("chatapp", LEASE) == []
    assert await store.take_deliveries("elsewhere", LEASE) == []
    clock.advance(61)  # the sender died mid-send: anyone may try again
    [again] = await store.take_deliveries("chatapp", LEASE)
    assert (again.id, again.attempts) == (taken.id, 2)


async def test_delivered_is_final(store: Store) -> None:
    session_id = await _pushed_turn(store, "hello")
    [taken] = await store.take_deliveries("chatapp", LEASE)
    assert await store.mark_delivered(taken.id)
    assert not await store.mark_delivered(taken.id)
    assert not await store.mark_undelivered(taken.id, "late failure", None)
    [item] = await store.list_outbox(session_id)
    assert item.status is DeliveryStatus.DELIVERED
    assert item.delivered_at is not None


async def test_a_failed_attempt_is_retried_later_and_a_refusal_is_final(
    store: Store, clock: ManualClock
) -> None:
    session_id = await _pushed_turn(store, "hello")
    [taken] = await store.take_deliveries("chatapp", LEASE)
    assert await store.mark_undelivered(taken.id, "503", clock.now() + timedelta(seconds=4))
    assert await store.take_deliveries("chatapp", LEASE) == []
    clock.advance(4)
    [retry] = await store.take_deliveries("chatapp", LEASE)
    assert await store.mark_undelivered(retry.id, "chat deleted", None)
    clock.advance(3600)
    assert await store.take_deliveries("chatapp", LEASE) == []
    [item] = await store.list_outbox(session_id)
    assert (item.status, item.last_error, item.attempts) == (
        DeliveryStatus.REJECTED, "chat deleted", 2)


async def test_replies_to_one_target_go_out_in_order(store: Store) -> None:
    await _pushed_turn(store, "one", reply="first")
    await _pushed_turn(store, "two", reply="second")
    await _pushed_turn(store, "three", reply="elsewhere", target="chat-2")
    taken = await store.take_deliveries("chatapp", LEASE)
    assert [t.text for t in taken] == ["first", "elsewhere"]  # "second" waits for "first"
    await store.mark_delivered(taken[0].id)
    [second] = await store.take_deliveries("chatapp", LEASE)
    assert second.text == "second"


async def test_an_ended_run_tells_the_channel_how_it_ended(store: Store) -> None:
    failed = await _pushed_turn(store, "a", reply="", status=RunStatus.FAILED)
    await _pushed_turn(store, "b", reply="half", status=RunStatus.KILLED)
    await _pushed_turn(store, "c", reply="", status=RunStatus.KILLED)
    texts = [o.text for o in await store.list_outbox(failed)]
    assert texts == ["[no reply: boom]", "half\n[stopped]"]
