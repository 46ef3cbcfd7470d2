"""Events for connected clients: the store's event table, tailed once, fanned out by session.

The store is the record: every event a client receives has the ``seq`` of its row, so a
client that reconnects asks for what came after the last ``seq`` it saw and gets exactly
that, from the store. One task tails the table for the whole gateway; the runtime's bus
wakes it at once, and it also looks every poll interval (for work done by other processes).
Reply text streams straight from the bus (``run.delta``, no ``seq``: it is not stored until
the run ends, when the transcript holds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from clawgate.domain import StoredEvent
from clawgate.errors import StoreError
from clawgate.runtime.bus import EventBus, ReplyDelta
from clawgate.store.protocol import Store
from clawgate.views import event_row

log = logging.getLogger(__name__)

Frame = dict[str, Any]
BATCH = 500
LISTENER_QUEUE = 2000


class Listener:
    """One client's view of the feed: the sessions it follows and what it has been sent."""

    def __init__(self) -> None:
        self.keys: frozenset[str] | None = frozenset()  # None: every session
        self.last_seq = 0
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue(LISTENER_QUEUE)
        self.lagged = False
        self._held: list[StoredEvent | ReplyDelta] | None = None  # live events during replay

    def follows(self, key: str) -> bool:
        return self.keys is None or key in self.keys

    def follow(self, key: str) -> None:
        if self.keys is not None and key not in self.keys:
            self.keys = self.keys | {key}

    def offer(self, item: StoredEvent | ReplyDelta) -> None:
        if not self.follows(item.session_key):
            return
        if self._held is not None:
            self._held.append(item)
            return
        self.deliver(item)

    def deliver(self, item: StoredEvent | ReplyDelta) -> None:
        """Send now (replay uses this directly; live events go through ``offer``)."""
        if isinstance(item, StoredEvent):
            if item.seq <= self.last_seq:
                return
            self.last_seq = item.seq
            frame = {"type": "event", "event": item.kind, "seq": item.seq,
                     "payload": event_row(item)}
        else:
            frame = {"type": "event", "event": "run.delta", "seq": None,
                     "payload": {"session": item.session_key, "sessionId": item.session_id,
                                 "runId": item.run_id, "text": item.text}}
        self._send(frame)

    def _send(self, frame: Frame) -> None:
        if self.lagged:
            return
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            self.lagged = True  # the client must resubscribe from its last seq
            with contextlib.suppress(asyncio.QueueFull):
                self.frames.get_nowait()
            self.frames.put_nowait({"type": "event", "event": "feed.lagged", "seq": None,
                                    "payload": {"lastSeq": self.last_seq}})

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for item in held:
            self.deliver(item)


class EventFeed:
    def __init__(self, store: Store, bus: EventBus, poll_interval: float) -> None:
        self._store = store
        self._bus = bus
        self._poll = poll_interval
        self._listeners: set[Listener] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.last_seq = 0

    async def start(self) -> None:
        self.last_seq = await self._store.last_event_seq()
        self._tasks = [asyncio.create_task(self._tail(), name="clawgate feed tail"),
                       asyncio.create_task(self._live(), name="clawgate feed live")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                listener.frames.put_nowait(None)

    def listener(self) -> Listener:
        listener = Listener()
        listener.last_seq = self.last_seq
        self._listeners.add(listener)
        return listener

    def remove(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def subscribe(
        self, listener: Listener, keys: Iterable[str] | None, after: int | None
    ) -> int:
        """Follow these sessions (None: all); replay stored events after ``after`` first.

        Returns how many stored events were replayed.
        """
        listener.keys = None if keys is None else frozenset(keys)
        listener.lagged = False
        if after is None:
            listener.last_seq = max(listener.last_seq, self.last_seq)
            return 0
        listener.hold()
        listener.last_seq = after
        replayed = 0
        try:
            while True:
                batch = await self._store.events_after(listener.last_seq, listener.keys, BATCH)
                for event in batch:
                    listener.deliver(event)
                replayed += len(batch)
                if len(batch) < BATCH:
                    break
        finally:
            listener.release()
        return replayed

    def wake(self) -> None:
        self._wake.set()

    async def _tail(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
            except StoreError as exc:
                log.warning("event feed could not read the store: %s", exc)

    async def _catch_up(self) -> None:
        while True:
            batch = await self._store.events_after(self.last_seq, None, BATCH)
            for event in batch:
                self.last_seq = event.seq
                for listener in list(self._listeners):
                    listener.offer(event)
            if len(batch) < BATCH:
                return

    async def _live(self) -> None:
        while True:  # a subscription that fell behind is closed: listen afresh
            async for event in self._bus.subscribe(maxsize=10_000):
                if isinstance(event, ReplyDelta):
                    for listener in list(self._listeners):
                        listener.offer(event)
                else:
                    self.wake()
            self.wake()
