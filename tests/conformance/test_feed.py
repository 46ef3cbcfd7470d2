"""The event feed: every change to runs, messages and sessions, in order, resumable by seq."""

from __future__ import annotations

import pytest

from clawgate.domain import ModelRef, QueueMode, QueuePatch
from clawgate.errors import UnknownSession
from clawgate.store.protocol import StopOutcome, Store
from tests.conformance.helpers import finish, running, say


async def test_a_turn_leaves_its_story_in_the_feed(store: Store) -> None:
    run = await running(store, "hello there")
    await finish(store, run, "hi")

    events = await store.events_after(0)

    assert [e.kind for e in events] == [
        "session.created", "message.pending", "run.queued", "message.answered",
        "run.running", "run.done"]
    assert {e.session_key for e in events} == {"s1"}
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    pending, answered, done = events[1], events[3], events[5]
    assert pending.detail["preview"] == "hello there"
    assert (answered.run_id, answered.detail["fate"]) == (run.id, "answered")
    assert done.detail["status"] == "done"
    assert done.detail["from"] == "running"
    assert (done.detail["provider"], done.detail["model"]) == ("echo", "echo")
    assert done.detail["runtimeMs"] == 0
    assert await store.last_event_seq() == events[-1].seq


async def test_a_client_resumes_after_the_last_seq_it_saw(store: Store) -> None:
    await say(store, "one", key="a")
    seen = await store.last_event_seq()
    await say(store, "two", key="a")
    await say(store, "elsewhere", key="b")

    missed = await store.events_after(seen)
    only_a = await store.events_after(seen, frozenset({"a"}))

    assert [e.detail.get("preview") for e in missed if e.kind == "message.pending"] == [
        "two", "elsewhere"]
    assert {e.session_key for e in only_a} == {"a"}
    assert await store.events_after(seen, frozenset()) == []
    assert len(await store.events_after(0, limit=2)) == 2


async def test_session_changes_are_in_the_feed(store: Store) -> None:
    await say(store, "hi")
    start = await store.last_event_seq()
    await store.set_model("s1", ModelRef("echo", "other"))
    await store.set_model("s1", ModelRef("echo", "other"))  # no change, no event
    await store.set_queue("s1", QueuePatch(mode=QueueMode.STEER, cap=4))
    await store.reset_session("s1")

    events = await store.events_after(start)

    kinds = [e.kind for e in events]
    assert kinds == ["session.model", "session.queue", "message.dropped",
                     "session.archived", "session.created"]
    assert events[0].detail == {"model": "echo/other"}
    assert events[1].detail == {"mode": "steer", "debounceMs": None, "cap": 4, "drop": None}
    assert events[2].detail == {"fate": "dropped", "reason": "reset", "preview": "hi"}
    assert events[3].session_id != events[4].session_id


async def test_deleting_a_session_archives_it_and_frees_the_key(store: Store) -> None:
    run = await running(store, "remember me")
    await say(store, "waiting")

    stop = await store.archive_session("s1")

    assert stop.outcome is StopOutcome.SIGNALLED
    assert len(stop.dropped) == 1
    assert await store.get_session("s1") is None
    assert [e.text for e in await store.transcript(run.session_id)] == ["remember me"]
    fresh = await say(store, "new start")
    assert fresh.session.id != run.session_id
    with pytest.raises(UnknownSession):
        await store.archive_session("nobody")
