"""Live events inside one process: run changes, reply text as it streams, message fates.

The store is the record; the bus only tells local listeners (a terminal, a WebSocket, a
caller waiting for its reply) what just happened. Subscriptions are indexed by session key
or session id, so a publish reaches only those who asked, however many listen. Each
subscriber has a bounded queue. Reply text that comes when the queue is full joins the same
run's piece waiting last, so a reader that falls behind a long reply (a model that streams
faster than a terminal prints) holds a bounded number of pieces for it and misses nothing.
A subscriber that still falls behind (its queue full of other events) is marked ``lagged``
and dropped rather than slowing the runtime down: it must say so or catch up from the store,
never just end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from clawgate.bounded import BoundedQueue
from clawgate.domain import Attempt, InboundMessage, Run


@dataclass(frozen=True, slots=True)
class RunChanged:
    session_key: str
    run: Run
    attempts: tuple[Attempt, ...] = ()  # when a run ends: every candidate it tried

    @property
    def session_id(self) -> str:
        return self.run.session_id


@dataclass(frozen=True, slots=True)
class ReplyDelta:
    session_key: str
    session_id: str
    run_id: str
    text: str
    offset: int = 0  # where ``text`` starts in the run's streamed text (in characters)


@dataclass(frozen=True, slots=True)
class MessageDecided:
    session_key: str
    message: InboundMessage

    @property
    def session_id(self) -> str:
        return self.message.session_id


RuntimeEvent = RunChanged | ReplyDelta | MessageDecided

_EVERYTHING = ("all", "")


@dataclass(slots=True)
class _JoinedText:
    """Pieces of one run's text, one after the other, waiting as one (joined when read)."""

    first: ReplyDelta
    pieces: list[str] = field(default_factory=list)
    end: int = 0  # where the next piece of the run must start to follow on

    @classmethod
    def of(cls, delta: ReplyDelta) -> _JoinedText:
        return cls(delta, [delta.text], delta.offset + len(delta.text))

    def add(self, delta: ReplyDelta) -> bool:
        """Join ``delta`` if it is the same run's text and follows on; whether it did."""
        if delta.run_id != self.first.run_id or delta.offset != self.end:
            return False
        self.pieces.append(delta.text)
        self.end += len(delta.text)
        return True

    def event(self) -> ReplyDelta:
        if len(self.pieces) == 1:
            return self.first
        return replace(self.first, text="".join(self.pieces))


class EventQueue:
    """A subscriber's events not yet read, at most ``maxsize``; None ends them.

    Reply text put when the queue is full joins the same run's piece waiting last, if that
    is where it follows on (an event already taken by ``get`` is never changed).
    """

    def __init__(self, maxsize: int) -> None:
        self._waiting: BoundedQueue[RuntimeEvent | _JoinedText | None] = BoundedQueue(maxsize)

    def qsize(self) -> int:
        return self._waiting.qsize()

    def empty(self) -> bool:
        return self._waiting.empty()

    def put_nowait(self, item: RuntimeEvent | None) -> None:
        """Queue ``item`` (QueueFull when there is no room and it joins nothing)."""
        if self._waiting.full() and isinstance(item, ReplyDelta):
            last = self._waiting.waiting_last()
            if last is not None and isinstance(last[0], _JoinedText) and last[0].add(item):
                return
        self._waiting.put_nowait(_JoinedText.of(item) if isinstance(item, ReplyDelta) else item)

    def get_nowait(self) -> RuntimeEvent | None:
        return _event(self._waiting.get_nowait())

    async def get(self) -> RuntimeEvent | None:
        return _event(await self._waiting.get())


def _event(item: RuntimeEvent | _JoinedText | None) -> RuntimeEvent | None:
    return item.event() if isinstance(item, _JoinedText) else item


class Subscription:
    def __init__(self, bus: EventBus, topic: tuple[str, str], maxsize: int) -> None:
        self._bus = bus
        self.topic = topic
        self.queue = EventQueue(maxsize)
        self.lagged = False
        self.closed = False

    def offer(self, event: RuntimeEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus.unsubscribe(self)
        with contextlib.suppress(asyncio.QueueFull):  # a full queue: ``lagged`` tells why
            self.queue.put_nowait(None)

    async def get(self) -> RuntimeEvent | None:
        """The next event, or None once the subscription is closed and drained.

        (A subscription closed because its queue was full has no room for an end marker:
        once what it holds has been read, it says None rather than waiting forever.)
        """
        if self.closed and self.queue.empty():
            return None
        return await self.queue.get()

    async def __aiter__(self) -> AsyncIterator[RuntimeEvent]:
        while (event := await self.get()) is not None:
            yield event


class EventBus:
    def __init__(self) -> None:
        self._topics: dict[tuple[str, str], set[Subscription]] = {}

    def subscribe(
        self, session_key: str | None = None, *, session_id: str | None = None,
        maxsize: int = 1000,
    ) -> Subscription:
        """Events of one session (by key, which survives /new, or by id), or of all."""
        topic = _topic(session_key, session_id)
        subscription = Subscription(self, topic, maxsize)
        self._topics.setdefault(topic, set()).add(subscription)
        return subscription

    def subscriber_count(self, session_key: str | None = None, *,
                         session_id: str | None = None) -> int:
        """How many subscriptions are open on exactly that topic (by key, by id, or all)."""
        return len(self._topics.get(_topic(session_key, session_id), ()))

    def unsubscribe(self, subscription: Subscription) -> None:
        listeners = self._topics.get(subscription.topic)
        if listeners is not None:
            listeners.discard(subscription)
            if not listeners:
                del self._topics[subscription.topic]

    def publish(self, event: RuntimeEvent) -> None:
        for topic in (("key", event.session_key), ("id", event.session_id), _EVERYTHING):
            for subscription in list(self._topics.get(topic, ())):
                subscription.offer(event)


def _topic(session_key: str | None, session_id: str | None) -> tuple[str, str]:
    if session_key is not None and session_id is not None:
        raise ValueError("subscribe by session key or by session id, not both")
    return (("key", session_key) if session_key is not None
            else ("id", session_id) if session_id is not None else _EVERYTHING)
