"""A bounded queue for one reader in the event loop, whose last waiting item may be replaced.

``asyncio.Queue`` cannot change an item once queued; the queues between the runtime and its
readers need to, to join a run's next piece of text to the piece still waiting (a reader
that falls behind gets the same text in fewer items, rather than being dropped).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """At most ``maxsize`` items waiting, first in first out (QueueFull beyond that)."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def waiting_last(self) -> tuple[T] | None:
        """The item waiting last, in a tuple (None: nothing waits)."""
        return (self._items[-1],) if self._items else None

    def replace_last(self, item: T) -> None:
        """Put ``item`` in place of the item waiting last (one must be waiting)."""
        self._items[-1] = item

    def put_nowait(self, item: T) -> None:
        if self.full():
            raise asyncio.QueueFull
        self._items.append(item)
        self._ready.set()

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
