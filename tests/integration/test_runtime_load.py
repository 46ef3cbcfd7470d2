"""The runtime under pressure: bounded concurrency, debounce, and a loop that never blocks."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from clawgate.domain import QueueMode, QueuePatch, QueueSettings
from clawgate.providers.echo import EchoProvider
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.scope import ServeOwnMessages
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.sqlite import SqliteStore
from tests.integration.harness import Harness


async def test_no_more_runs_at_once_than_the_limit_and_everyone_is_answered(
    harness: Harness,
) -> None:
    runtime = await harness.runtime(max_concurrent_runs=3)
    sent = [await runtime.send(f"user-{n}", "hi") for n in range(8)]
    await asyncio.sleep(0.05)
    assert len(harness.model.open_calls()) == 3
    assert len(await runtime.store.active_runs()) == 3  # the rest wait, unclaimed
    for _ in range(8):
        (await harness.model.next_call()).finish("hello")
    outcomes = [await runtime.wait_for(a.message.id, within=5) for a in sent]
    assert {o.reply for o in outcomes} == {"hello"}


async def test_collect_waits_for_quiet_then_answers_everything_at_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "d.db")  # a real clock: debounce is real time
    settings = RuntimeSettings(queue=QueueSettings(mode=QueueMode.COLLECT, debounce_ms=200))
    runtime = Runtime(store, {"echo": EchoProvider("echo", delay_ms=300)}, settings)
    await runtime.start()
    try:
        first = await runtime.send("s1", "one")
        await asyncio.sleep(0.1)  # the first reply is under way
        second = await runtime.send("s1", "two")
        await asyncio.sleep(0.15)
        third = await runtime.send("s1", "three")  # still within the debounce of "two"
        outcomes = [await runtime.wait_for(m.message.id, within=5)
                    for m in (first, second, third)]
    finally:
        await runtime.close()
        await store.close()
    assert outcomes[0].reply == "echo: one"
    assert outcomes[1].run == outcomes[2].run
    assert outcomes[2].reply == "echo: two\nthree"


async def test_a_process_that_did_not_run_the_turn_still_waits_for_quiet(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    first_store, second_store = await SqliteStore.open(path), await SqliteStore.open(path)
    settings = RuntimeSettings(queue=QueueSettings(mode=QueueMode.COLLECT, debounce_ms=400))
    echo = {"echo": EchoProvider("echo", delay_ms=300)}
    one_shot = Runtime(first_store, echo, settings, scope=ServeOwnMessages(first_store))
    other = Runtime(second_store, echo, settings)  # serves every session, like a gateway
    await one_shot.start()
    await other.start()
    try:
        first = await one_shot.send("s1", "one")
        await asyncio.sleep(0.1)  # the first reply is under way, in the one-shot process
        second = await other.send("s1", "two")
        outcomes = [await other.wait_for(m.message.id, within=10) for m in (first, second)]
    finally:
        await one_shot.close()
        await other.close()
        await first_store.close()
        await second_store.close()
    assert [o.reply for o in outcomes] == ["echo: one", "echo: two"]
    collected = outcomes[1].run
    assert collected is not None
    assert collected.owner_id == other.owner.id
    # "two" queued behind the first run: its reply starts only after 400 ms of quiet.
    assert collected.created_at >= second.message.received_at + timedelta(milliseconds=400)


async def test_the_event_loop_keeps_running_while_another_process_holds_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    store = await SqliteStore.open(path)
    other_process = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other_process.execute("BEGIN IMMEDIATE")  # hold the write lock
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            beats += 1
            await asyncio.sleep(0.01)

    released: list[int] = []

    def release() -> None:
        released.append(beats)
        other_process.execute("COMMIT")

    ticking = asyncio.create_task(heartbeat())
    asyncio.get_running_loop().call_later(0.3, release)
    await store.set_queue("s1", QueuePatch(mode=QueueMode.FOLLOWUP))  # waits for the lock
    ticking.cancel()
    other_process.close()
    await store.close()
    assert released, "the write finished while another process held the lock"
    assert released[0] >= 3  # the loop kept serving other work (blocked, it would count 0)
