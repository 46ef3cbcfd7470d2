"""What a channel that pushes replies (a chat app) offers the runtime: a way to send one."""

from __future__ import annotations

from typing import Protocol


class Sender(Protocol):
    @property
    def channel(self) -> str:
        """The channel name, as its inbound messages carry it."""
        ...

    async def send(self, target: str, text: str) -> None:
        """Deliver ``text`` to ``target``; raise DeliveryFailed when it cannot."""
        ...
