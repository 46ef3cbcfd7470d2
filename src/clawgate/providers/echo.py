"""The built-in offline provider: replies ``echo: <text>``, and can be made slow or broken.

It needs no key and no network, so clawgate runs out of the box and tests can make a model
slow (``delay_ms``), failing (``fail = "rate_limit" | "auth" | "server"``) or hanging
(``fail = "hang"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from clawgate.domain import Usage
from clawgate.errors import AuthFailed, ProviderUnavailable, RateLimited
from clawgate.providers.base import (
    Capabilities,
    ChatRole,
    ModelRequest,
    StreamEvent,
    TextDelta,
    UsageReport,
    estimate_input,
    estimate_tokens,
)
from clawgate.providers.settings import EchoFailure


class EchoProvider:
    capabilities = Capabilities(streaming=True, context_window=1_000_000)

    def __init__(
        self, name: str = "echo", delay_ms: int = 0, fail: EchoFailure = EchoFailure.NONE,
        chunk_delay_ms: int = 0,
    ) -> None:
        self._name = name
        self.delay_ms = delay_ms
        self.fail = fail
        self.chunk_delay_ms = chunk_delay_ms

    @property
    def name(self) -> str:
        return self._name

    async def prepare(self) -> None:
        """Nothing to set up."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        await self._maybe_fail()
        reply = "echo: " + latest_user_text(request)
        words = reply.split(" ")
        for index, word in enumerate(words):
            if index and self.chunk_delay_ms:
                await asyncio.sleep(self.chunk_delay_ms / 1000)
            yield TextDelta(word if index == 0 else " " + word)
        yield UsageReport(Usage(estimate_input(request), estimate_tokens(reply)))

    async def _maybe_fail(self) -> None:
        match self.fail:
            case EchoFailure.HANG:
                await asyncio.Event().wait()  # until cancelled
            case EchoFailure.RATE_LIMIT:
                raise RateLimited("rate limited", provider=self._name, retry_after=1.0)
            case EchoFailure.AUTH:
                raise AuthFailed("the API key was refused", provider=self._name)
            case EchoFailure.SERVER:
                raise ProviderUnavailable("server error (500)", provider=self._name)
            case EchoFailure.NONE:
                return


def latest_user_text(request: ModelRequest) -> str:
    """The user messages after the last assistant reply, one per line."""
    tail: list[str] = []
    for message in reversed(request.messages):
        if message.role is ChatRole.ASSISTANT:
            break
        if message.role is ChatRole.USER:
            tail.append(message.content)
    return "\n".join(reversed(tail))
