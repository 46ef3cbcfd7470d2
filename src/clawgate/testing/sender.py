"""A pushing channel for tests: records what it was asked to send, and can be made to fail."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from clawgate.errors import DeliveryFailed


@dataclass
class RecordingSender:
    """``fail_next(n)`` makes the next n sends fail (an outage); ``reject`` refuses for good;
    ``break_next`` raises what a buggy channel might (not a ``DeliveryFailed``)."""

    channel: str = "chatapp"
    sent: list[tuple[str, str]] = field(default_factory=list)
    attempts: int = 0
    _failures: deque[Exception] = field(default_factory=deque)

    def fail_next(self, times: int, retry_after: float | None = None) -> None:
        for _ in range(times):
            self._failures.append(DeliveryFailed("the chat service is down",
                                                 retry_after=retry_after))

    def reject_next(self) -> None:
        self._failures.append(DeliveryFailed("the chat no longer exists", permanent=True))

    def break_next(self) -> None:
        self._failures.append(KeyError("chat_id"))

    async def send(self, target: str, text: str) -> None:
        self.attempts += 1
        if self._failures:
            raise self._failures.popleft()
        self.sent.append((target, text))
