"""The OpenClaw wedge, re-enacted against every store.

There, a run finished and wrote a terminal status; then another part of the program saved the
session entry from a copy read before the run ended, and the row read ``running`` again. The
session refused new messages until someone edited the store by hand.

Here every session change is a field-level command, and status is derived from the runs, so
the same sequence, in every order and concurrently, must leave the session finished and usable.
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
    RunOutcome,
    RunStatus,
    Usage,
)
from clawgate.store.protocol import Store
from tests.conformance.helpers import OWNER, claim, running, say
from tests.stores import StoreBackend

Step = Callable[[Store], Awaitable[object]]
STEP_NAMES = ("finish", "switch_model", "record_usage", "save_delivery", "change_queue")


async def _play(backend: StoreBackend, order: tuple[str, ...], concurrently: bool) -> None:
    store = await backend.handle()
    run = await running(store, "hello")
    stale = await store.summarize_session("s1")  # what the other part of the program read
    assert stale is not None
    assert stale.latest_run is not None
    assert stale.latest_run.status is RunStatus.RUNNING
    key = stale.session.key
    [first_entry] = await store.transcript(stale.session.id)

    steps: dict[str, Step] = {
        "finish": lambda s: s.finish_run(
            run.id, OWNER, RunOutcome(RunStatus.DONE, "hi there", Usage(12, 4))
        ),
        "switch_model": lambda s: s.set_model(key, ModelRef("echo", "other")),
        # usage written outside the run: a compaction summarising the start of the session
        "record_usage": lambda s: s.append_summary(
            stale.session.id, "they said hello", first_entry.seq, Usage(3, 2)
        ),
        "save_delivery": lambda s: s.set_delivery(key, Delivery("telegram", "chat-7")),
        "change_queue": lambda s: s.set_queue(key, QueuePatch(mode=QueueMode.FOLLOWUP)),
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


@pytest.mark.parametrize("order", list(itertools.permutations(STEP_NAMES)))
async def test_a_finished_run_stays_finished_whatever_the_order(
    backend: StoreBackend, order: tuple[str, ...]
) -> None:
    await _play(backend, order, concurrently=False)


async def test_a_finished_run_stays_finished_when_writers_race(backend: StoreBackend) -> None:
    for order in itertools.islice(itertools.permutations(STEP_NAMES), 0, 120, 11):
        await _play(backend, order, concurrently=True)
        await (await backend.handle()).reset_session("s1")
