"""The OpenAI and Anthropic adapters against a real HTTP server speaking each wire format."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from clawgate.domain import Usage
from clawgate.errors import (
    AuthFailed,
    BillingFailed,
    ContextOverflow,
    NotConfigured,
    Overloaded,
    ProviderError,
    ProviderFatal,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from clawgate.providers.anthropic import AnthropicAdapter, split_system
from clawgate.providers.base import (
    ChatMessage,
    ChatRole,
    ModelRequest,
    Provider,
    TextDelta,
    UsageReport,
)
from clawgate.providers.openai import OpenAIAdapter
from clawgate.providers.settings import (
    HttpProviderSettings,
    Profile,
    ProviderKind,
    TokenLimitField,
)
from clawgate.testing import ManualClock
from clawgate.testing.model_server import (
    Exchange,
    Fail,
    FakeModelServer,
    Hang,
    Malformed,
    Reply,
    Reset,
    StreamError,
)

KEY = "sk-test-0123456789abcdef"
MAIN = Profile("main", "env TEST_KEY", KEY)
HELLO = ModelRequest("m1", (ChatMessage(ChatRole.USER, "hello"),))
START = datetime(2026, 1, 1, tzinfo=UTC)  # the adapters' clock: a Thursday, at midnight


@pytest.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    server = await FakeModelServer.start()
    yield server
    await server.close()


@pytest.fixture(params=["openai", "anthropic"])
async def adapter(
    request: pytest.FixtureRequest, server: FakeModelServer
) -> AsyncIterator[OpenAIAdapter | AnthropicAdapter]:
    kind = ProviderKind(request.param)
    settings = HttpProviderSettings(
        name=kind.value, kind=kind, profiles=(Profile("main", "env TEST_KEY", KEY),),
        base_url=server.openai_base_url if kind is ProviderKind.OPENAI else server.url,
        timeout_seconds=1.0,
    )
    made = OpenAIAdapter if kind is ProviderKind.OPENAI else AnthropicAdapter
    adapter = made(settings, settings.profiles[0], ManualClock(START))
    yield adapter
    await adapter.aclose()


async def _collect(provider: Provider, request: ModelRequest = HELLO) -> tuple[str, Usage]:
    text, usage = [], Usage()
    async for event in provider.stream(request):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, UsageReport):
            usage += event.usage
    return "".join(text), usage


async def _failure(provider: Provider) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await _collect(provider)
    return caught.value


async def _closed(exchange: Exchange) -> bool:
    await asyncio.wait_for(exchange.closed_by_client.wait(), 3)
    return True


async def test_a_reply_streams_with_its_usage(
    adapter: Provider, server: FakeModelServer
) -> None:
    server.script(Reply("Hi there, friend", input_tokens=40, output_tokens=4, cached_tokens=32,
                        cache_write_tokens=5))
    text, usage = await _collect(adapter)
    assert text == "Hi there, friend"
    assert usage == Usage(40, 4, 32)  # the whole input, of which 32 read from the cache
    exchange = server.exchanges[-1]
    assert exchange.streamed
    assert exchange.api_key == KEY
    assert exchange.user_texts() == ["hello"]


@pytest.mark.parametrize(
    ("fail", "kind"),
    [
        (Fail(401, "bad key"), AuthFailed),
        (Fail(403, "not allowed"), AuthFailed),
        (Fail(402, "no credit"), BillingFailed),
        (Fail(429, "quota", code="insufficient_quota"), BillingFailed),
        (Fail(500, "boom"), ProviderUnavailable),
        (Fail(529, "busy"), Overloaded),
        (Fail(503, "busy"), Overloaded),
        (Fail(400, "This model's maximum context length is 8192 tokens"), ContextOverflow),
        (Fail(400, "unknown parameter"), ProviderFatal),
        (Fail(404, "no such model"), ProviderFatal),
    ],
)
async def test_http_errors_become_typed_errors(
    adapter: Provider, server: FakeModelServer, fail: Fail, kind: type[ProviderError]
) -> None:
    server.script(fail)
    error = await _failure(adapter)
    assert type(error) is kind
    assert fail.message in str(error)
    assert f"HTTP {fail.status}" in str(error)


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("overloaded_error", Overloaded),
        ("api_error", ProviderUnavailable),
        ("rate_limit_error", RateLimited),
        ("authentication_error", AuthFailed),
        ("invalid_request_error", ProviderFatal),
        ("something_new", ProviderUnavailable),
    ],
)
async def test_an_error_event_inside_a_200_stream_is_typed_by_its_error_type(
    adapter: Provider, server: FakeModelServer, error_type: str, kind: type[ProviderError]
) -> None:
    server.script(StreamError(error_type, "it went wrong"))
    error = await _failure(adapter)
    assert type(error) is kind
    assert "it went wrong" in str(error)
    assert error_type in str(error)
    assert "HTTP 200" not in str(error)


async def test_a_rate_limit_says_when_to_retry(adapter: Provider, server: FakeModelServer) -> None:
    server.script(Fail(429, "slow down", retry_after=7))
    error = await _failure(adapter)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7


@pytest.mark.parametrize("date", ["Thu, 01 Jan 2026 00:00:45", "Thu, 01 Jan 2026 00:00:45 -0000",
                                  "Thu, 01 Jan 2026 00:00:45 GMT"])
async def test_a_retry_after_date_is_counted_from_the_clock_and_read_as_gmt_without_a_zone(
    adapter: Provider, server: FakeModelServer, date: str
) -> None:
    server.script(Fail(429, "slow down", retry_after=date))
    error = await _failure(adapter)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 45


GEMINI_EXHAUSTED = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                              "message": "Resource has been exhausted (e.g. check quota)."}}


@pytest.mark.parametrize("body", [GEMINI_EXHAUSTED, [GEMINI_EXHAUSTED]], ids=["dict", "list"])
async def test_a_429_from_gemini_saying_check_quota_is_a_rate_limit_not_billing(
    server: FakeModelServer, body: object
) -> None:
    adapter = _made(ProviderKind.OPENAI, server)  # Gemini's OpenAI-compatible endpoint
    server.script(Fail(429, retry_after=20, body=body))
    try:
        error = await _failure(adapter)
    finally:
        await adapter.aclose()
    assert isinstance(error, RateLimited)
    assert error.retry_after == 20
    assert "Resource has been exhausted (e.g. check quota)." in str(error)


async def test_a_key_echoed_by_the_provider_is_redacted(
    adapter: Provider, server: FakeModelServer
) -> None:
    server.script(Fail(401, f"Incorrect API key provided: {KEY}"))
    error = await _failure(adapter)
    assert KEY not in str(error)
    assert "[redacted]" in str(error)


@pytest.mark.parametrize("field", list(TokenLimitField))
async def test_the_output_limit_goes_in_the_field_the_endpoint_reads(
    server: FakeModelServer, field: TokenLimitField
) -> None:
    adapter = _made(ProviderKind.OPENAI, server, limit_field=field)
    try:
        await _collect(adapter, ModelRequest("m", HELLO.messages, 77))
    finally:
        await adapter.aclose()
    sent = server.exchanges[-1].body
    (other,) = {f.value for f in TokenLimitField} - {field.value}
    assert sent[field.value] == 77
    assert other not in sent


async def test_a_missing_key_fails_before_any_request(server: FakeModelServer) -> None:
    settings = HttpProviderSettings("openai", ProviderKind.OPENAI,
                                    (Profile("main", "env OPENAI_API_KEY"),),
                                    base_url=server.openai_base_url)
    error = await _failure(OpenAIAdapter(settings, settings.profiles[0]))
    assert isinstance(error, NotConfigured)
    assert "env OPENAI_API_KEY is not set" in str(error)
    assert server.exchanges == []


@pytest.mark.parametrize("kind", list(ProviderKind))
async def test_a_refused_connection_names_the_endpoint_without_its_secrets(
    kind: ProviderKind,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = "/v1" if kind is ProviderKind.OPENAI else ""
    settings = HttpProviderSettings(
        "local", kind, (Profile("main", "env K", KEY),),
        base_url=f"http://me:hunter2@127.0.0.1:{port}{path}?key=q-secret", timeout_seconds=5)
    made = OpenAIAdapter if kind is ProviderKind.OPENAI else AnthropicAdapter
    adapter = made(settings, settings.profiles[0])
    error = await _failure(adapter)
    await adapter.aclose()
    assert isinstance(error, ProviderUnavailable)
    assert f"connection to http://127.0.0.1:{port}{path} failed" in str(error)
    for secret in ("hunter2", "q-secret", KEY):
        assert secret not in str(error)


async def test_a_local_server_needs_no_key(server: FakeModelServer) -> None:
    settings = HttpProviderSettings("ollama", ProviderKind.OPENAI,
                                    (Profile("default", "none"),),
                                    base_url=server.openai_base_url, needs_key=False)
    adapter = OpenAIAdapter(settings, settings.profiles[0])
    assert (await _collect(adapter))[0] == "reply to: hello"
    await adapter.aclose()


@pytest.mark.parametrize("after", [(), ("Once", " upon")])
async def test_cancelling_closes_the_connection_before_or_during_the_reply(
    adapter: Provider, server: FakeModelServer, after: tuple[str, ...]
) -> None:
    server.script(Hang(after))
    seen: list[str] = []

    async def consume() -> None:
        async for event in adapter.stream(HELLO):
            if isinstance(event, TextDelta):
                seen.append(event.text)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _closed(server.exchanges[-1])
    assert "".join(seen) == "".join(after)


@pytest.mark.parametrize("after", [(), ("Once",)])
async def test_silence_beyond_the_timeout_is_a_timeout_and_hangs_up(
    adapter: Provider, server: FakeModelServer, after: tuple[str, ...]
) -> None:
    server.script(Hang(after))
    error = await _failure(adapter)
    assert isinstance(error, ProviderTimeout)
    assert await _closed(server.exchanges[-1])


async def test_a_malformed_chunk_is_a_broken_stream_and_hangs_up(
    adapter: Provider, server: FakeModelServer
) -> None:
    server.script(Malformed(("Hel",)))
    error = await _failure(adapter)
    assert isinstance(error, ProviderUnavailable)
    assert await _closed(server.exchanges[-1])


async def test_a_connection_reset_mid_stream_is_unavailable(
    adapter: Provider, server: FakeModelServer
) -> None:
    server.script(Reset(("Hel",)))
    assert isinstance(await _failure(adapter), ProviderUnavailable)


async def test_anthropic_gets_system_apart_and_alternating_turns(
    server: FakeModelServer,
) -> None:
    settings = HttpProviderSettings("anthropic", ProviderKind.ANTHROPIC,
                                    (Profile("main", "env K", KEY),), base_url=server.url)
    adapter = AnthropicAdapter(settings, settings.profiles[0])
    request = ModelRequest("c1", (
        ChatMessage(ChatRole.SYSTEM, "Summary: they met."),
        ChatMessage(ChatRole.ASSISTANT, "earlier reply"),
        ChatMessage(ChatRole.USER, "one"), ChatMessage(ChatRole.USER, "two"),
    ))
    await _collect(adapter, request)
    await adapter.aclose()
    body = server.exchanges[-1].body
    assert body["system"] == "Summary: they met."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][-1]["content"] == "one\n\ntwo"
    assert body["max_tokens"] == 4096


async def test_the_fake_server_counts_cached_input_as_each_provider_does(
    server: FakeModelServer,
) -> None:
    import anthropic
    import openai

    reply = Reply("hi", input_tokens=40, output_tokens=4, cached_tokens=32,
                  cache_write_tokens=5)
    server.script(reply, reply)
    async with anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url) as claude:
        message = await claude.messages.create(
            model="c1", max_tokens=8, messages=[{"role": "user", "content": "hello"}])
    # Anthropic's input_tokens leaves out what was read from or written to the cache.
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens) == (3, 32, 5)
    async with openai.AsyncOpenAI(api_key=KEY, base_url=server.openai_base_url) as gpt:
        completion = await gpt.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hello"}])
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 40  # OpenAI's counts the cached part in
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 32


@pytest.mark.parametrize("kind", list(ProviderKind))
async def test_prepare_sets_up_the_client_so_a_call_needs_nothing_more(
    kind: ProviderKind, server: FakeModelServer
) -> None:
    adapter = _made(kind, server)
    await adapter.prepare()
    assert server.exchanges == []  # setting up sends nothing
    assert (await _collect(adapter))[0] == "reply to: hello"
    await adapter.aclose()


@pytest.mark.parametrize("kind", list(ProviderKind))
async def test_an_unusable_key_fails_at_once_saying_why_without_a_request(
    kind: ProviderKind, server: FakeModelServer
) -> None:
    reason = ("the key in env TEST_KEY contains a character that cannot be sent "
              "(U+00A0 NO-BREAK SPACE at position 10)")
    adapter = _made(kind, server, Profile("main", "env TEST_KEY", unusable=reason))
    with pytest.raises(NotConfigured) as prepared:
        await adapter.prepare()
    error = await _failure(adapter)
    assert isinstance(error, NotConfigured)
    assert str(error) == str(prepared.value)
    assert f"unusable API key for profile 'main': {reason}" in str(error)
    assert server.exchanges == []


@pytest.mark.parametrize("stream_usage", [True, False])
async def test_stream_usage_false_leaves_stream_options_out_and_no_usage_comes(
    server: FakeModelServer, stream_usage: bool
) -> None:
    adapter = _made(ProviderKind.OPENAI, server, stream_usage=stream_usage)
    server.script(Reply("hi", input_tokens=9, output_tokens=2))
    assert await _collect(adapter) == ("hi", Usage(9, 2) if stream_usage else Usage())
    await adapter.aclose()
    sent = server.exchanges[-1].body
    assert ("stream_options" in sent) is stream_usage


def _made(kind: ProviderKind, server: FakeModelServer,
          profile: Profile = MAIN, **options: Any,
          ) -> OpenAIAdapter | AnthropicAdapter:
    settings = HttpProviderSettings(
        kind.value, kind, (profile,),
        base_url=server.openai_base_url if kind is ProviderKind.OPENAI else server.url,
        **options)
    made = OpenAIAdapter if kind is ProviderKind.OPENAI else AnthropicAdapter
    return made(settings, profile)


def test_split_system_keeps_a_plain_conversation_as_it_is() -> None:
    system, turns = split_system((ChatMessage(ChatRole.USER, "hi"),))
    assert (system, turns) == ("", [{"role": "user", "content": "hi"}])
