"""The OpenClaw wedge, re-enacted against every store.

There, a run finished and wrote a terminal status; then another part of the program saved the
session entry from a copy read before the run ended, and the row read ``running`` again. The
session refused new messages until someone edited the store by hand.

Here every session change is a field-level command, and status is derived from the runs, so
the same sequence, in every order and concurrently, must leave the session finished and usable:
first against the store alone, then with the real runtime finishing the run and answering the
next message.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from clawgate.domain import (
    Delivery,
    ModelRef,
    QueueMode,
    QueuePatch,
    Role,
    RunOutcome,
    RunStatus,
    TranscriptEntry,
    Usage,
)
from clawgate.store.protocol import SessionSummary, Store
from tests.conformance.helpers import OWNER, claim, running, say
from tests.integration.harness import MODEL, Harness
from tests.stores import StoreBackend

Step = Callable[[Store], Awaitable[object]]
STEP_NAMES = ("finish", "switch_model", "record_usage", "save_delivery", "change_queue")
ORDERS = list(itertools.permutations(STEP_NAMES))


def _stale_updates(stale: SessionSummary, first: TranscriptEntry, model: ModelRef
                   ) -> dict[str, Step]:
    """What the other part of the program writes, from what it read while the run ran."""
    key = stale.session.key
    return {
        "switch_model": lambda s: s.set_model(key, model),
        # usage written outside the run: a compaction summarising the start of the session
        "record_usage": lambda s: s.append_summary(
            stale.session.id, "they said hello", first.seq, Usage(3, 2)
        ),
        "save_delivery": lambda s: s.set_delivery(key, Delivery("telegram", "chat-7")),
        "change_queue": lambda s: s.set_queue(key, QueuePatch(mode=QueueMode.FOLLOWUP)),
    }


async def _read_while_running(store: Store) -> tuple[SessionSummary, TranscriptEntry]:
    stale = await store.summarize_session("s1")
    assert stale is not None
    assert stale.latest_run is not None
    assert stale.latest_run.status is RunStatus.RUNNING
    [first_entry] = await store.transcript(stale.session.id)
    return stale, first_entry


async def _play(backend: StoreBackend, order: tuple[str, ...], concurrently: bool) -> None:
    store = await backend.handle()
    run = await running(store, "hello")
    stale, first_entry = await _read_while_running(store)
    steps: dict[str, Step] = {
        "finish": lambda s: s.finish_run(
            run.id, OWNER, RunOutcome(RunStatus.DONE, "hi there", Usage(12, 4))
        ),
        **_stale_updates(stale, first_entry, ModelRef("echo", "other")),
    }
    if concurrently:
        handles = [await backend.handle() for _ in order]
        await asyncio.gather(*(steps[name](h) for name, h in zip(order, handles, strict=True)))
    else:
        for name in order:
            await steps[name](store)

    after = await store.summarize_session("s1")
    assert after is not None
    assert after.latest_run is not None
    assert after.latest_run.status is RunStatus.DONE
    assert after.latest_run.ended_at is not None
    assert after.session.usage == Usage(12 + 3, 4 + 2)  # the run's and the compaction's
    assert after.session.model == ModelRef("echo", "other")
    assert after.session.delivery == Delivery("telegram", "chat-7")
    assert await store.audit() == []

    following = await say(store, "are you still there?")
    assert following.active_run is None
    next_claim = await claim(store, following.session.id)
    assert [m.text for m in next_claim.messages] == ["are you still there?"]


@pytest.mark.parametrize("order", ORDERS)
async def test_a_finished_run_stays_finished_whatever_the_order(
    backend: StoreBackend, order: tuple[str, ...]
) -> None:
    await _play(backend, order, concurrently=False)


async def test_a_finished_run_stays_finished_when_writers_race(backend: StoreBackend) -> None:
    for order in ORDERS[::11]:
        await _play(backend, order, concurrently=True)
        await (await backend.handle()).reset_session("s1")


# --- the same, with the real runtime finishing the run -----------------------------------


async def _play_through_a_runtime(harness: Harness, order: tuple[str, ...]) -> None:
    runtime = await harness.runtime()
    other = await harness.backend.handle()  # the other part of the program
    asked = await runtime.send("s1", "hello")
    call = await harness.model.next_call()
    stale, first_entry = await _read_while_running(other)
    switched = ModelRef(MODEL.provider, "m2")

    async def finish(_: Store) -> object:
        call.finish("hi there", Usage(12, 4))
        return await runtime.wait_for(asked.message.id, within=5)

    steps: dict[str, Step] = {"finish": finish, **_stale_updates(stale, first_entry, switched)}
    for done, name in enumerate(order, 1):
        await steps[name](other)
        if "finish" in order[:done]:
            assert await _latest_status(other) is RunStatus.DONE, f"after {name}"

    harness.model.queue_reply("still here")
    following = await runtime.send("s1", "are you still there?")
    answered = await runtime.wait_for(following.message.id, within=5)

    assert answered.run is not None
    assert (answered.run.status, answered.run.model) == (RunStatus.DONE, switched)
    replies = [e.text for e in await other.transcript(stale.session.id) if e.role is Role.ASSISTANT]
    assert replies == ["hi there", "still here"]
    assert await _latest_status(other) is RunStatus.DONE
    after = await other.get_session("s1")
    assert after is not None
    assert after.usage == Usage(12 + 3 + 1, 4 + 2 + 1)  # both runs' and the compaction's
    assert await other.audit() == []


async def _latest_status(store: Store) -> RunStatus | None:
    summary = await store.summarize_session("s1")
    assert summary is not None
    return summary.latest_run.status if summary.latest_run else None


@pytest.mark.parametrize("order", ORDERS)
async def test_a_runtime_answers_the_next_message_whatever_the_order(
    backend: StoreBackend, order: tuple[str, ...]
) -> None:
    harness = Harness(backend)
    try:
        await _play_through_a_runtime(harness, order)
    finally:
        await harness.close()
