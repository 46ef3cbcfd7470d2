"""What a model provider is: one streaming coroutine, declared capabilities, typed errors.

An adapter turns a ``ModelRequest`` into a stream of ``TextDelta`` and ``UsageReport``
events and raises the ``ProviderError`` tree (``clawgate.errors``) when it fails; it never
returns an error as text. Cancelling the stream (stop, timeout) must close the provider call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from clawgate.domain import Usage


class ChatRole(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: ChatRole
    content: str


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


StreamEvent = TextDelta | UsageReport


@dataclass(frozen=True, slots=True)
class Capabilities:
    streaming: bool = True
    tools: bool = False
    needs_key: bool = False
    context_window: int = 8192


class Provider(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def prepare(self) -> None:
        """Set up what a first call needs (the SDK imported, its client built), so a latency
        measured afterwards is the provider's; raise a ProviderError (NotConfigured) if the
        profile cannot be used. ``stream`` does it too when it was not done. Never blocks
        the event loop: the runtime calls it in the background when it starts."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream the reply; raise a ProviderError on failure."""
        ...


def estimate_tokens(text: str) -> int:
    """A provider-independent token estimate (about four characters a token)."""
    return (len(text) + 3) // 4


def estimate_input(request: ModelRequest) -> int:
    """An estimate of the tokens a request's messages take."""
    return sum(estimate_tokens(m.content) for m in request.messages)
