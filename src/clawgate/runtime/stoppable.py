"""Work done for a session outside its runs (a ``/compact``), which a stop of the session
ends too: stop is accepted in every state, and a model call that hangs must not hold a
command for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class StoppableWork:
    """At most one piece of work per session key, each in a task of its own."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def busy(self, key: str) -> bool:
        return key in self._tasks

    async def run(self, key: str, work: Coroutine[Any, Any, T]) -> T | None:
        """The work's result, or None if a ``stop`` ended it first. Cancelling the caller
        cancels the work."""
        task = asyncio.ensure_future(work)
        self._tasks[key] = task
        try:
            return await task
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling():
                raise  # the caller was cancelled, not the work stopped
            return None
        finally:
            if self._tasks.get(key) is task:
                del self._tasks[key]

    async def stop(self, key: str, within: float) -> bool:
        """End the key's work, waiting at most ``within`` s for it to end; False if there
        was none."""
        task = self._tasks.get(key)
        if task is None:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=within)
        return True
