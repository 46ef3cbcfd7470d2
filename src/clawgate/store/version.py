"""The store's version as the event loop sees it: a number that moves at every write noticed,
and what pollers wait on instead of querying.

A store moves its board when it notices a write: the SQLite store's reader thread checks
``PRAGMA data_version`` between its calls and at least every watch interval (so a commit by
any connection, in any process, is noticed within that), the memory store at every command
that writes. Whoever waits (``changed``) wakes then; nobody polls the database to learn that
nothing happened.
"""

from __future__ import annotations

import asyncio
import contextlib


class VersionBoard:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._moved = asyncio.Event()

    def move(self, value: int) -> None:
        """The store now reads ``value`` (on the event loop's thread)."""
        if value == self.value:
            return
        self.value = value
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def step(self) -> None:
        """A write happened (the memory store's commands say so)."""
        self.move(self.value + 1)

    async def changed(self, after: int, within: float) -> int:
        """The version once it is not ``after`` (at once, if it is not now), or ``after`` when
        ``within`` seconds pass first."""
        if self.value != after:
            return self.value
        moved = self._moved
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await moved.wait()
        return self.value
