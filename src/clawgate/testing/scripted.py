"""A model provider driven by the test: every call waits until the script says what happens.

    provider = ScriptedProvider()
    call = await provider.next_call()     # a run reached the model
    call.delta("hel"); call.delta("lo")   # stream some text
    call.finish()                         # ... and end the reply (or call.fail(exc))
    # never answering a call is how a test makes the model hang

``call.closed`` tells whether the runtime closed the stream (stop and timeout must).
Pre-loaded replies (``provider.queue_reply("hi")``) answer the next calls at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from clawgate.domain import Usage
from clawgate.errors import ProviderError
from clawgate.providers.base import (
    Capabilities,
    ModelRequest,
    StreamEvent,
    TextDelta,
    UsageReport,
)

_FINISH = object()


@dataclass
class ScriptedCall:
    request: ModelRequest
    actions: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def delta(self, text: str) -> None:
        self.actions.put_nowait(TextDelta(text))

    def finish(self, text: str = "", usage: Usage | None = None) -> None:
        if text:
            self.delta(text)
        self.actions.put_nowait(UsageReport(usage or Usage(1, 1)))
        self.actions.put_nowait(_FINISH)

    def fail(self, error: ProviderError) -> None:
        self.actions.put_nowait(error)


class ScriptedProvider:
    capabilities = Capabilities(streaming=True)

    def __init__(self, name: str = "scripted") -> None:
        self._name = name
        self.calls: list[ScriptedCall] = []
        self._new: asyncio.Queue[ScriptedCall] = asyncio.Queue()
        self._replies: deque[str] = deque()

    @property
    def name(self) -> str:
        return self._name

    def queue_reply(self, text: str) -> None:
        self._replies.append(text)

    async def next_call(self) -> ScriptedCall:
        """The next call that is waiting for the script (fails after 5 s without one)."""
        async with asyncio.timeout(5):
            return await self._new.get()

    def open_calls(self) -> list[ScriptedCall]:
        return [c for c in self.calls if not c.closed]

    async def prepare(self) -> None:
        """Nothing to set up."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        call = ScriptedCall(request)
        self.calls.append(call)
        if self._replies:
            call.finish(self._replies.popleft())
        else:
            self._new.put_nowait(call)
        try:
            while True:
                action = await call.actions.get()
                if action is _FINISH:
                    return
                if isinstance(action, ProviderError):
                    raise action
                assert isinstance(action, TextDelta | UsageReport)
                yield action
        finally:
            call.closed = True
