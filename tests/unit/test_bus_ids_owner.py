"""The event bus routes and bounds; ids sort by creation; a dead owner is recognised."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime

from clawgate.domain import Fate, InboundMessage, OwnerInfo
from clawgate.ids import new_id
from clawgate.runtime.bus import EventBus, MessageDecided, ReplyDelta
from clawgate.runtime.owner import is_gone, process_start, this_process

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _decided(key: str, session_id: str) -> MessageDecided:
    message = InboundMessage(id="m", session_id=session_id, channel="t", text="x",
                             received_at=NOW, fate=Fate.DROPPED)
    return MessageDecided(key, message)


async def test_events_reach_only_those_who_asked() -> None:
    bus = EventBus()
    by_key, by_id, everything = (bus.subscribe("a"), bus.subscribe(session_id="ses_b"),
                                 bus.subscribe())
    bus.publish(_decided("a", "ses_a"))
    bus.publish(ReplyDelta("b", "ses_b", "run", "hi"))
    assert by_key.queue.qsize() == 1
    assert by_id.queue.qsize() == 1
    assert everything.queue.qsize() == 2


async def test_a_subscriber_that_falls_behind_is_dropped_not_waited_for() -> None:
    bus = EventBus()
    slow = bus.subscribe("a", maxsize=2)
    for _ in range(5):
        bus.publish(_decided("a", "ses_a"))
    assert slow.lagged
    assert slow.closed
    assert [await slow.get(), await slow.get()] == [_decided("a", "ses_a")] * 2
    assert await asyncio.wait_for(slow.get(), 1) is None  # then it says so: no endless wait
    assert [event async for event in slow] == []


async def test_a_reader_behind_a_long_reply_gets_all_its_text_and_is_not_dropped() -> None:
    bus = EventBus()
    slow = bus.subscribe("a", maxsize=3)
    bus.publish(_decided("a", "ses_a"))
    pieces = [f"w{n} " for n in range(5000)]  # far more than the queue holds
    offset = 0
    for piece in pieces:
        bus.publish(ReplyDelta("a", "ses_a", "run_1", piece, offset))
        offset += len(piece)

    assert not slow.lagged
    assert [await slow.get() for _ in range(3)] == [
        _decided("a", "ses_a"), ReplyDelta("a", "ses_a", "run_1", "w0 ", 0),
        ReplyDelta("a", "ses_a", "run_1", "".join(pieces[1:]), 3)]
    bus.publish(ReplyDelta("a", "ses_a", "run_1", "end", offset))  # read again: apart
    assert await slow.get() == ReplyDelta("a", "ses_a", "run_1", "end", offset)


def test_ids_sort_in_creation_order_even_within_a_millisecond() -> None:
    ids = [new_id("msg") for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("msg_") and len(i) == 30 for i in ids)


def _started(pid: int) -> str:
    for _ in range(500):  # /proc shows a new process at once; a sanity bound
        if started := process_start(pid):
            return started
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never showed up in /proc")


def test_a_process_that_exited_is_gone_and_a_live_one_is_not() -> None:
    me = this_process(NOW)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = OwnerInfo("own_x", me.host, child.pid, me.boot_id, _started(child.pid), NOW)
        assert not is_gone(other, me)  # another live process on this machine
    finally:
        child.kill()
        child.wait()
    assert is_gone(other, me)
    assert not is_gone(me, me)
    elsewhere = OwnerInfo("own_y", "another-host", child.pid, me.boot_id, "1", NOW)
    assert not is_gone(elsewhere, me)  # only the lease can speak for another machine


def test_a_reused_pid_does_not_pass_for_the_old_owner() -> None:
    me = this_process(NOW)
    # pid 1 is alive, but it is not the process that started at tick "0": that owner is gone
    reused = OwnerInfo("own_w", me.host, 1, me.boot_id, "0", NOW)
    assert process_start(1) != "0"
    assert is_gone(reused, me)
