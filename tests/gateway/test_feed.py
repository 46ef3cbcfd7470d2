"""The gateway's event feed on its own: a run's events in order, and recovery from a lag."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from clawgate.domain import Run
from clawgate.gateway.feed import EventFeed, Listener
from clawgate.runtime.bus import EventBus, ReplyDelta
from clawgate.store.protocol import Store
from tests.conformance.helpers import finish, running, say

POLL_S = 0.02


@pytest.fixture
async def bus_and_feed(store: Store) -> AsyncIterator[tuple[EventBus, EventFeed]]:
    bus = EventBus()
    feed = EventFeed(store, bus, POLL_S, live_queue=4)
    await feed.start()
    yield bus, feed
    await feed.close()


async def _listen(feed: EventFeed) -> Listener:
    listener = feed.listener()
    await feed.subscribe(listener, None, None)
    return listener


def _delta(run: Run, text: str) -> ReplyDelta:
    return ReplyDelta("s1", run.session_id, run.id, text)


async def _frames_until(listener: Listener, event: str, text: str | None = None
                        ) -> list[dict[str, Any]]:
    seen = []
    async with asyncio.timeout(5):
        while True:
            sent = await listener.frames.get()
            assert sent is not None
            frame = sent.frame
            seen.append(frame)
            if frame["event"] == event and (text is None or frame["payload"]["text"] == text):
                return seen


async def test_text_published_before_the_feed_read_run_running_comes_after_it(
    store: Store, bus_and_feed: tuple[EventBus, EventFeed],
) -> None:
    bus, feed = bus_and_feed
    listener = await _listen(feed)
    run = await running(store, "hello")
    bus.publish(_delta(run, "first words"))  # the tail has not read run.running yet
    bus.publish(_delta(run, " and more"))
    await finish(store, run, "first words and more")

    frames = await _frames_until(listener, "run.done")

    kinds = [f["event"] for f in frames]
    assert kinds.index("run.running") < kinds.index("run.delta") < kinds.index("run.done")
    # The client read nothing meanwhile: both pieces wait for it as one frame.
    assert [f["payload"]["text"] for f in frames if f["event"] == "run.delta"] == [
        "first words and more"]


async def test_live_text_flows_again_after_the_feed_fell_behind(
    store: Store, bus_and_feed: tuple[EventBus, EventFeed],
) -> None:
    bus, feed = bus_and_feed
    listener = await _listen(feed)
    run = await running(store, "hello")
    await _frames_until(listener, "run.running")

    for n in range(10):  # more than the feed's live queue holds, before it can take any
        bus.publish(_delta(run, f"burst {n}"))
    await asyncio.sleep(POLL_S * 3)
    bus.publish(_delta(run, "after the lag"))

    frames = await _frames_until(listener, "run.delta", "after the lag")
    assert frames[-1]["payload"]["runId"] == run.id


def _sent(listener: Listener) -> list[dict[str, Any]]:
    """Every frame the client has been sent so far."""
    frames = []
    while not listener.frames.empty():
        frame = listener.frames.get_nowait()
        assert frame is not None
        frames.append(frame.frame)
    return frames


async def test_a_client_that_fell_behind_gets_every_event_by_subscribing_after_the_lag(
    store: Store,
) -> None:
    for n in range(12):  # 13 stored events: more than twice what a listener holds
        await say(store, f"message {n}")
    newest = await store.last_event_seq()
    feed = EventFeed(store, EventBus(), POLL_S, listener_queue=5)
    await feed.start()
    try:
        listener = feed.listener()
        received: list[int] = []
        after = 0
        for _ in range(newest):  # each round gets at least one event
            replay = await feed.subscribe(listener, None, after)
            frames = _sent(listener)  # the client reads only once the replay is queued
            seqs = [f["seq"] for f in frames if f["event"] != "feed.lagged"]
            assert seqs == list(range(after + 1, after + 1 + len(seqs)))  # no gap
            assert replay.replayed == len(seqs)
            received += seqs
            if frames[-1]["event"] != "feed.lagged":
                break
            after = frames[-1]["payload"]["lastSeq"]
            assert after == seqs[-1]  # the last seq the client got: nothing after it skipped
    finally:
        await feed.close()

    assert received == list(range(1, newest + 1))


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(round(5 / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError("not within 5 s")


async def _read_previews(listener: Listener, previews: list[str]) -> None:
    while (frame := await listener.frames.get()) is not None:
        previews.append(frame.frame["payload"].get("preview", ""))


async def test_a_client_that_resubscribes_without_reading_its_backlog_stalls_no_one(
    store: Store,
) -> None:
    feed = EventFeed(store, EventBus(), POLL_S, listener_queue=5)
    await feed.start()
    slow, other = await _listen(feed), feed.listener()
    await feed.subscribe(other, ["s2"], None)  # a client of another session
    previews: list[str] = []
    reader = asyncio.create_task(_read_previews(other, previews))
    try:
        for n in range(8):  # the slow client reads nothing: it lags
            await say(store, f"message {n}")
        await _until(lambda: slow.lagged)
        await feed.subscribe(slow, None, None)  # e.g. a chat following anew, backlog unread

        await say(store, "after the resubscribe", key="s2")
        await _until(lambda: "after the resubscribe" in previews)  # the feed runs for all
        frames = _sent(slow)  # and the slow client knows where to resume
        assert frames[-1]["event"] == "feed.lagged"
        assert [f["seq"] for f in frames[:-1]] == list(range(1, len(frames)))
    finally:
        reader.cancel()
        await feed.close()


async def test_a_client_reading_as_it_goes_replays_a_backlog_longer_than_its_queue(
    store: Store,
) -> None:
    for n in range(110):  # 220 stored events (a session and its message each): a long backlog
        await say(store, f"message {n}", key=f"s{n}")
    newest = await store.last_event_seq()
    feed = EventFeed(store, EventBus(), POLL_S, listener_queue=120)
    await feed.start()
    listener = feed.listener()
    frames: list[dict[str, Any]] = []

    async def read() -> None:
        while (frame := await listener.frames.get()) is not None:
            frames.append(frame.frame)

    reader = asyncio.create_task(read())
    try:
        replay = await feed.subscribe(listener, None, 0)  # handed over a page at a time
        await _until(lambda: len(frames) >= replay.replayed)
    finally:
        reader.cancel()
        await feed.close()

    assert [f["event"] for f in frames if f["event"] == "feed.lagged"] == []
    assert [f["seq"] for f in frames] == list(range(1, newest + 1))


def _text_of(run: Run, key: str, text: str, offset: int = 0) -> ReplyDelta:
    return ReplyDelta(key, run.session_id, run.id, text, offset)


async def test_a_client_behind_gets_a_runs_text_in_fewer_frames_that_add_up_to_the_same(
    store: Store, bus_and_feed: tuple[EventBus, EventFeed],
) -> None:
    bus, feed = bus_and_feed
    listener = await _listen(feed)
    first, second = await running(store, "hello", key="s1"), await running(store, key="s2")
    await _frames_until(listener, "run.running")
    await _frames_until(listener, "run.running")
    pieces = [f"word{n} " for n in range(40)]

    # The client reads nothing while the text comes (a slow connection).
    for n, piece in enumerate(pieces):
        bus.publish(_text_of(first, "s1", piece, offset=len("".join(pieces[:n]))))
        if n == 19:
            bus.publish(_text_of(second, "s2", "other run"))
        await asyncio.sleep(0)  # the feed takes each piece in as it comes
    await _until(lambda: listener.frames.qsize() == 3)

    frames = _sent(listener)
    assert [(f["event"], f["payload"]["runId"], f["payload"]["text"], f["payload"]["offset"])
            for f in frames] == [
        ("run.delta", first.id, "".join(pieces[:20]), 0),
        ("run.delta", second.id, "other run", 0),  # never joined across runs: order is kept
        ("run.delta", first.id, "".join(pieces[20:]), len("".join(pieces[:20]))),
    ]  # a joined frame starts where its first piece did


async def test_a_client_is_sent_only_the_sessions_it_follows(
    store: Store, bus_and_feed: tuple[EventBus, EventFeed],
) -> None:
    bus, feed = bus_and_feed
    of_s1, of_s2, of_all = feed.listener(), feed.listener(), feed.listener()
    await feed.subscribe(of_s1, ["s1"], None)
    await feed.subscribe(of_s2, ["s2"], None)
    await feed.subscribe(of_all, None, None)

    run = await running(store, "for s1", key="s1")
    await _frames_until(of_all, "run.running")
    bus.publish(_text_of(run, "s1", "text of s1"))
    await say(store, "for s2", key="s2")
    await _frames_until(of_all, "message.pending")
    await _until(lambda: of_s2.frames.qsize() > 0)

    assert {f["payload"]["session"] for f in _sent(of_s1)} == {"s1"}
    assert {f["payload"]["session"] for f in _sent(of_s2)} == {"s2"}
    of_s1.follow("s2")  # as chat.send to s2 does
    await say(store, "for s2 again", key="s2")
    await _until(lambda: of_s1.frames.qsize() > 0)
    assert {f["payload"]["preview"] for f in _sent(of_s1)} == {"for s2 again"}

    await feed.subscribe(of_s1, ["s1"], None)  # follows s1 only, again
    await _until(lambda: of_s2.frames.qsize() > 0)
    _sent(of_s2)
    feed.remove(of_s2)  # the client went away
    await say(store, "for s2, once more", key="s2")
    await say(store, "for s1 at last", key="s1")
    await _until(lambda: of_s1.frames.qsize() > 0)
    assert {f["payload"]["preview"] for f in _sent(of_s1)} == {"for s1 at last"}
    assert of_s2.frames.empty()


async def _previews_until(listener: Listener, last: str) -> list[str]:
    """The previews of the messages the client is sent, up to ``last``."""
    previews = []
    async with asyncio.timeout(5):
        while last not in previews:
            sent = await listener.frames.get()
            assert sent is not None
            if sent.frame["event"] == "message.pending":
                previews.append(sent.frame["payload"]["preview"])
    return previews


async def test_a_client_that_sent_to_thousands_of_sessions_follows_each_of_them(
    store: Store, bus_and_feed: tuple[EventBus, EventFeed],
) -> None:
    _, feed = bus_and_feed
    busy, other = feed.listener(), feed.listener()
    await feed.subscribe(busy, [], None)
    await feed.subscribe(other, ["s2"], None)
    followed = [f"k{n}" for n in range(10_000)]
    for key in followed:  # one at a time, as chat.send to each does
        busy.follow(key)
    busy.follow("k7")  # again: nothing changes
    assert busy.keys == frozenset(followed)

    for key in ["k0", "s2", "k5000", "k9999"]:
        await say(store, f"for {key}", key=key)
    await say(store, "for s2, once more", key="s2")

    assert await _previews_until(busy, "for k9999") == ["for k0", "for k5000", "for k9999"]
    assert await _previews_until(other, "for s2, once more") == ["for s2", "for s2, once more"]

    await feed.subscribe(busy, ["s2"], None)  # follows s2 alone now
    await say(store, "for k5000, unheard", key="k5000")
    await say(store, "for s2 at last", key="s2")
    assert await _previews_until(busy, "for s2 at last") == ["for s2 at last"]
