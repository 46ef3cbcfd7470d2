"""Live events inside one process: run changes, reply text as it streams, message fates.

The store is the record; the bus only tells local listeners (a terminal, a WebSocket) what
just happened. Each subscriber has a bounded queue; one that falls behind is marked
``lagged`` and dropped rather than slowing the runtime down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from clawgate.domain import InboundMessage, Run


@dataclass(frozen=True, slots=True)
class RunChanged:
    session_key: str
    run: Run


@dataclass(frozen=True, slots=True)
class ReplyDelta:
    session_key: str
    run_id: str
    text: str


@dataclass(frozen=True, slots=True)
class MessageDecided:
    session_key: str
    message: InboundMessage


RuntimeEvent = RunChanged | ReplyDelta | MessageDecided


class Subscription:
    def __init__(self, bus: EventBus, session_key: str | None, maxsize: int) -> None:
        self._bus = bus
        self.session_key = session_key
        self.queue: asyncio.Queue[RuntimeEvent | None] = asyncio.Queue(maxsize)
        self.lagged = False
        self.closed = False

    def offer(self, event: RuntimeEvent) -> None:
        if self.session_key is not None and event.session_key != self.session_key:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            self.close()

    def close(self) -> None:
        self.closed = True
        self._bus.unsubscribe(self)
        with contextlib.suppress(asyncio.QueueFull):  # a full queue: ``lagged`` tells why
            self.queue.put_nowait(None)

    async def get(self) -> RuntimeEvent | None:
        """The next event, or None once the subscription is closed."""
        return await self.queue.get()

    async def __aiter__(self) -> AsyncIterator[RuntimeEvent]:
        while (event := await self.queue.get()) is not None:
            yield event


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, session_key: str | None = None, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, session_key, maxsize)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: RuntimeEvent) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(event)
