"""Anthropic Messages, on the official ``anthropic`` SDK (loaded off the event loop).

System text goes into ``system``; turns are merged so roles alternate and the first is the
user's, as the API requires. Cancelling the stream closes the HTTP connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from clawgate.domain import Usage
from clawgate.errors import ProviderError, ProviderTimeout
from clawgate.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRole,
    ModelRequest,
    StreamEvent,
    TextDelta,
    UsageReport,
)
from clawgate.providers.http_adapter import HttpAdapter, body_message
from clawgate.providers.http_errors import error_codes, from_status

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic


class AnthropicAdapter(HttpAdapter["AsyncAnthropic"]):
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(streaming=True, needs_key=True,
                            context_window=self.settings.context_window)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        client = await self._connect()
        system, turns = split_system(request.messages)
        max_tokens = request.max_output_tokens or self.settings.max_output_tokens
        extra: dict[str, Any] = {"system": system} if system else {}
        try:
            events = await client.messages.create(
                model=request.model, max_tokens=max_tokens, messages=turns, stream=True,
                **extra,
            )
        except Exception as exc:  # the SDK boundary: every failure becomes a ProviderError
            raise self._translate(exc) from exc
        usage = _UsageCount()
        try:
            async for event in events:
                text = usage.take(event)
                if text:
                    yield TextDelta(text)
                gained = usage.unreported()
                if gained is not None:  # as soon as it is known: a stop may come next
                    yield UsageReport(gained)
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            await events.close()  # also on stop: the connection is not left running

    def _build(self) -> AsyncAnthropic:
        import anthropic  # heavy: in a worker thread, only when a model may be called

        return anthropic.AsyncAnthropic(
            api_key=self.profile.api_key, base_url=self.settings.base_url, max_retries=0,
            default_headers=dict(self.settings.headers),
            timeout=anthropic.Timeout(self.settings.timeout_seconds, connect=10.0),
        )

    def _translate(self, exc: Exception) -> ProviderError:
        import anthropic

        message = self._redacted(body_message(exc))
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(f"no answer within {self.settings.timeout_seconds:g}s",
                                   provider=self.name)
        if isinstance(exc, anthropic.APIStatusError):
            return from_status(self.name, exc.status_code, message, error_codes(exc.body),
                               exc.response.headers, now=self._clock.now())
        if isinstance(exc, anthropic.APIConnectionError):
            return self._unreachable(message)
        return self._other_failure(exc, message)


class _UsageCount:
    """Token counts spread over message_start and message_delta events (running totals).

    Anthropic's ``input_tokens`` are only the input it neither read from nor wrote to its
    cache: the whole input is that plus ``cache_read_input_tokens`` plus
    ``cache_creation_input_tokens``, and the cached part is the cache reads.

    ``message_start`` already counts the input, so a reply stopped or broken halfway still
    reports what it cost; ``unreported`` hands out each increase once.
    """

    def __init__(self) -> None:
        self.uncached = self.cache_read = self.cache_write = self.output = 0
        self._reported = Usage()

    def take(self, event: Any) -> str:
        kind = getattr(event, "type", "")
        if kind == "message_start":
            self._count(getattr(event.message, "usage", None))
        elif kind == "message_delta":
            self._count(getattr(event, "usage", None))
        elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
            return str(event.delta.text)
        return ""

    def _count(self, usage: Any) -> None:
        if usage is None:
            return
        self.uncached = max(self.uncached, getattr(usage, "input_tokens", None) or 0)
        self.output = max(self.output, getattr(usage, "output_tokens", None) or 0)
        self.cache_read = max(self.cache_read,
                              getattr(usage, "cache_read_input_tokens", None) or 0)
        self.cache_write = max(self.cache_write,
                               getattr(usage, "cache_creation_input_tokens", None) or 0)

    def unreported(self) -> Usage | None:
        """What the counts grew by since the last call; None when they did not."""
        total = Usage(self.uncached + self.cache_read + self.cache_write, self.output,
                      self.cache_read)
        if total == self._reported:
            return None
        before, self._reported = self._reported, total
        return Usage(total.input_tokens - before.input_tokens,
                     total.output_tokens - before.output_tokens,
                     total.cached_tokens - before.cached_tokens)


def split_system(messages: tuple[ChatMessage, ...]) -> tuple[str, list[Any]]:
    """System text apart; the rest merged so roles alternate, starting with the user."""
    system = "\n\n".join(m.content for m in messages if m.role is ChatRole.SYSTEM)
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role is ChatRole.SYSTEM:
            continue
        if turns and turns[-1]["role"] == m.role.value:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role.value, "content": m.content})
    if turns and turns[0]["role"] == ChatRole.ASSISTANT.value:
        turns.insert(0, {"role": "user", "content": "(continuing the conversation)"})
    return system, list(turns)
