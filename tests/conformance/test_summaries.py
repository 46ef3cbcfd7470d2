"""The ``summarize`` drop policy: the note about dropped messages reaches one run, the run that
answers next (or the run the rest are steered into), or is settled by stop and reset, and
each dropped message says which."""

from __future__ import annotations

from clawgate.domain import (
    DropPolicy,
    DropReason,
    InboundMessage,
    QueueMode,
    QueueSettings,
    Role,
    Run,
)
from clawgate.store.protocol import Store
from tests.conformance.helpers import OWNER, claim, finish, running, say

SUMMARIZE = QueueSettings(mode=QueueMode.COLLECT, debounce_ms=0, cap=1,
                          drop=DropPolicy.SUMMARIZE)


async def _dropped_while_busy(
    store: Store, texts: tuple[str, ...] = ("a", "b", "c"),
    defaults: QueueSettings = SUMMARIZE,
) -> tuple[Run, list[InboundMessage]]:
    """A run in progress, and ``texts`` sent meanwhile to a queue of one: all but the last
    are dropped, to be summarized."""
    run = await running(store, "one", defaults=defaults)
    accepted = [await say(store, text, defaults=defaults) for text in texts]
    return run, [a.message for a in accepted]


async def _message(store: Store, message_id: str) -> InboundMessage:
    message = await store.get_message(message_id)
    assert message is not None
    return message


async def _notes(store: Store, session_id: str) -> list[str]:
    return [e.text for e in await store.transcript(session_id) if e.role is Role.NOTE]


async def test_a_summarized_message_names_the_run_that_was_told_of_it(store: Store) -> None:
    run, (a, b, _) = await _dropped_while_busy(store)
    assert (await _message(store, a.id)).summarized_in is None  # not yet told
    await finish(store, run)

    told = await claim(store, run.session_id, defaults=SUMMARIZE)

    for message in (await _message(store, a.id), await _message(store, b.id)):
        assert (message.reason, message.summarized_in) == (
            DropReason.QUEUE_FULL_SUMMARIZED, told.run.id)
        assert f"run {told.run.id} was told" in message.why_dropped
    listed = {m.id: m for m in await store.list_inbound(run.session_id)}
    assert listed[a.id].summarized_in == told.run.id


async def test_stop_clears_the_summary_along_with_the_waiting_messages(store: Store) -> None:
    run, (a, b, c) = await _dropped_while_busy(store)

    stopped = await store.request_stop(run.session_id)

    assert [m.id for m in stopped.dropped] == [c.id]
    assert [m.id for m in stopped.cleared_summaries] == [a.id, b.id]
    for message_id in (a.id, b.id):
        message = await _message(store, message_id)
        assert (message.summarized_in, message.summary_cleared) == (None, DropReason.STOPPED)
        assert "cleared by stop" in message.why_dropped
    await finish(store, run)
    await say(store, "next question", defaults=SUMMARIZE)
    next_run = await claim(store, run.session_id, defaults=SUMMARIZE)
    assert await _notes(store, run.session_id) == []
    assert [m.text for m in next_run.messages] == ["next question"]


async def test_an_interrupt_keeps_the_summary_for_the_next_run(store: Store) -> None:
    run, (a, _, _) = await _dropped_while_busy(store)

    await store.request_stop(run.session_id, clear_queue=False)

    assert (await _message(store, a.id)).summary_cleared is None


async def test_a_reset_settles_the_summary_no_run_can_carry_now(store: Store) -> None:
    _, (a, b, _) = await _dropped_while_busy(store)

    reset = await store.reset_session("s1")

    assert [m.id for m in reset.stop.cleared_summaries] == [a.id, b.id]
    message = await _message(store, a.id)
    assert message.summary_cleared is DropReason.RESET
    assert "a summary goes to the next turn" not in message.why_dropped
    assert await store.audit() == []


async def test_a_steered_run_is_told_of_the_messages_dropped_before_it_took_the_rest(
    store: Store,
) -> None:
    steer = QueueSettings(mode=QueueMode.STEER, debounce_ms=0, cap=1,
                          drop=DropPolicy.SUMMARIZE)
    run, (a, b) = await _dropped_while_busy(store, ("a", "b"), defaults=steer)

    taken = await store.take_steering(run.id, OWNER, "so far")

    assert [m.id for m in taken or []] == [b.id]
    assert (await _message(store, a.id)).summarized_in == run.id
    entries = [(e.role, e.text) for e in await store.transcript(run.session_id)
               if e.run_id == run.id]
    assert entries[-3:] == [(Role.ASSISTANT, "so far"),
                            (Role.NOTE, "[1 earlier message was dropped from a full queue: a]"),
                            (Role.USER, "b")]
    await finish(store, run)
    await say(store, "later")
    later = await claim(store, run.session_id)
    assert [e for e in await store.transcript(run.session_id)
            if e.run_id == later.run.id and e.role is Role.NOTE] == []
