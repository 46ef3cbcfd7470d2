"""Runtimes on a shared store backend, talking to one scripted model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from clawgate.domain import MAX_DEBOUNCE_MS, ModelRef, QueueMode, QueuePatch, QueueSettings
from clawgate.runtime.bus import RunChanged, Subscription
from clawgate.runtime.runtime import MessageOutcome, Runtime
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import Store
from clawgate.testing import ManualClock, ScriptedProvider
from tests.stores import StoreBackend

MODEL = ModelRef("scripted", "m1")
SETTINGS = RuntimeSettings(
    default_model=MODEL, queue=QueueSettings(debounce_ms=0), poll_interval=0.01
)
#: Collect, with a quiet time far longer than any test waits.
LONG_QUIET = QueueSettings(mode=QueueMode.COLLECT, debounce_ms=MAX_DEBOUNCE_MS)
#: More sessions than a look for waiting work lists (``claimable_sessions``' limit, 100).
MANY = 101


class Harness:
    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend
        self.clock: ManualClock = backend.clock
        self.model = ScriptedProvider("scripted")
        self.runtimes: list[Runtime] = []

    async def runtime(self, supervise: bool = True, **changes: Any) -> Runtime:
        """A runtime as a separate process would have it: its own store handle and owner."""
        store = await self.backend.handle()
        settings = replace(SETTINGS, **changes)
        runtime = Runtime(store, {"scripted": self.model}, settings)
        await runtime.start(supervise=supervise)
        self.runtimes.append(runtime)
        return runtime

    async def crash(self, runtime: Runtime) -> None:
        """kill -9: nothing more is written by that runtime."""
        await runtime.store.close()
        runtime.abandon()

    async def close(self) -> None:
        for runtime in self.runtimes:
            await runtime.close(grace=0)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.005)


async def in_quiet_time(harness: Harness, runtime: Runtime, key: str = "s1") -> str:
    """A message that came during a reply, now waiting out the quiet time after it (in
    collect or followup mode with a long ``debounce_ms``)."""
    events = runtime.subscribe(key)
    await runtime.send(key, "one")
    busy = await harness.model.next_call()
    waiting = await runtime.send(key, "two")
    harness.clock.advance(0.1)
    busy.finish("r1")  # "two" came during the reply: its quiet time runs now
    await _run_ended(events)
    # The lane looked for more work as that run ended, before anything else this store
    # handle is asked (it serves calls in order): "two" is in its quiet time.
    await runtime.store.renew_leases(runtime.owner.id, frozenset(), SETTINGS.lease)
    return waiting.message.id


async def _run_ended(events: Subscription) -> None:
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, RunChanged) and event.run.status.terminal:
                events.close()
                return


async def mode(store: Store, key: str, queue_mode: QueueMode) -> None:
    await store.set_queue(key, QueuePatch(mode=queue_mode))


async def answer(runtime: Runtime, key: str, text: str) -> MessageOutcome:
    accepted = await runtime.send(key, text)
    return await runtime.wait_for(accepted.message.id, within=5)
