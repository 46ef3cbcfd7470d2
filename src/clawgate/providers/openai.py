"""OpenAI-compatible Chat Completions, on the official ``openai`` SDK (loaded off the loop).

One adapter per auth profile. The SDK's own retries are off: retries, failover and cooldowns
are the router's. Cancelling the stream closes the HTTP connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from clawgate.domain import Usage
from clawgate.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from clawgate.providers.base import (
    Capabilities,
    ChatMessage,
    ModelRequest,
    StreamEvent,
    TextDelta,
    UsageReport,
)
from clawgate.providers.http_adapter import HttpAdapter, body_message
from clawgate.providers.http_errors import error_codes, from_status, from_stream_error

if TYPE_CHECKING:
    from openai import AsyncOpenAI

NO_KEY = "not-needed"  # the SDK insists on a key; local servers ignore it


class OpenAIAdapter(HttpAdapter["AsyncOpenAI"]):
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(streaming=True, needs_key=self.settings.needs_key,
                            context_window=self.settings.context_window)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        client = await self._connect()  # the SDK is imported (off the loop) from here on
        import openai
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        body: dict[str, Any] = {"model": request.model,
                                "messages": _messages(request.messages), "stream": True}
        if self.settings.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if request.max_output_tokens is not None:
            body[self.settings.limit_field.value] = request.max_output_tokens
        try:
            # The SDK's public request method, with the body as plain JSON: it skips the
            # typed-params transform of chat.completions.create, which costs ~0.15 ms per
            # message on the event loop (30 ms for a 200-message conversation).
            chunks = await client.post(
                "/chat/completions", body=body, cast_to=ChatCompletion, stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
        except Exception as exc:  # the SDK boundary: every failure becomes a ProviderError
            raise self._translate(exc) from exc
        try:
            async for chunk in chunks:
                for event in _events(chunk):
                    yield event
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            await chunks.close()  # also on stop: the connection is not left running

    def _build(self) -> AsyncOpenAI:
        import openai  # heavy: in a worker thread, only when a model may be called
        import openai.types.chat  # what ``stream`` names

        return openai.AsyncOpenAI(
            api_key=self.profile.api_key or NO_KEY, base_url=self.settings.base_url,
            max_retries=0, default_headers=dict(self.settings.headers),
            timeout=openai.Timeout(self.settings.timeout_seconds, connect=10.0),
        )

    def _translate(self, exc: Exception) -> ProviderError:
        import openai

        message = self._redacted(body_message(exc))
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(f"no answer within {self.settings.timeout_seconds:g}s",
                                   provider=self.name)
        if isinstance(exc, openai.APIStatusError):
            return from_status(self.name, exc.status_code, message, error_codes(exc.body),
                               exc.response.headers, now=self._clock.now())
        if isinstance(exc, openai.APIConnectionError):
            return self._unreachable(message)
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderUnavailable(f"malformed response: {message}", provider=self.name)
        if isinstance(exc, openai.APIError) and isinstance(exc.body, dict):  # sent mid-stream
            return from_stream_error(self.name, message, error_codes(exc.body),
                                     now=self._clock.now())
        return self._other_failure(exc, message)


def _messages(messages: tuple[ChatMessage, ...]) -> list[Any]:
    return [{"role": m.role.value, "content": m.content} for m in messages]


def _events(chunk: Any) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for choice in chunk.choices or ():
        text = getattr(choice.delta, "content", None)
        if text:
            events.append(TextDelta(text))
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) or 0
        events.append(UsageReport(Usage(usage.prompt_tokens or 0,
                                        usage.completion_tokens or 0, cached)))
    return events
