"""Any OpenAI client can talk to a clawgate agent: the official SDK against the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from clawgate.domain import Run
from clawgate.gateway.server import RunningGateway


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key=gateway.token, base_url=f"{gateway.url}/v1",
                                max_retries=0)
    yield client
    await client.close()


async def test_a_plain_completion_answers_and_lands_in_the_session(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    completion = await sdk.chat.completions.create(
        model="clawgate", user="alice",
        messages=[{"role": "system", "content": "be nice"},
                  {"role": "user", "content": "what time is it?"}])
    assert completion.choices[0].message.content == "echo: what time is it?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "echo/echo"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    session = await gateway.runtime.store.get_session("openai:alice")
    assert session is not None
    texts = [e.text for e in await gateway.runtime.store.transcript(session.id)]
    assert texts == ["what time is it?", "echo: what time is it?"]


async def test_a_streamed_completion_arrives_in_chunks(sdk: openai.AsyncOpenAI) -> None:
    chunks = await sdk.chat.completions.create(
        model="clawgate", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "tell me three words"}])
    pieces, finish, usage = [], None, None
    async for chunk in chunks:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == "echo: tell me three words"
    assert len([p for p in pieces if p]) > 1  # streamed, not in one piece
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens > 0


async def test_the_session_comes_from_a_header_and_only_the_newest_message_is_new(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    for text in ("first", "second"):
        await sdk.chat.completions.create(
            model="clawgate", extra_headers={"X-Clawgate-Session": "desk"},
            messages=[{"role": "user", "content": "an old message"},
                      {"role": "assistant", "content": "an old reply"},
                      {"role": "user", "content": text}])
    session = await gateway.runtime.store.get_session("desk")
    assert session is not None
    users = [e.text for e in await gateway.runtime.store.transcript(session.id)
             if e.role == "user"]
    assert users == ["first", "second"]


async def test_a_retried_request_with_an_idempotency_key_is_answered_once(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    for _ in range(2):
        answer = await sdk.chat.completions.create(
            model="clawgate", user="bob", extra_headers={"Idempotency-Key": "req-1"},
            messages=[{"role": "user", "content": "just once"}])
        assert answer.choices[0].message.content == "echo: just once"
    session = await gateway.runtime.store.get_session("openai:bob")
    assert session is not None
    assert len(await gateway.runtime.store.list_runs(session.id)) == 1


async def test_an_idempotency_key_belongs_to_its_session(sdk: openai.AsyncOpenAI) -> None:
    answers = [await sdk.chat.completions.create(
        model="clawgate", user=user, extra_headers={"Idempotency-Key": "req-7"},
        messages=[{"role": "user", "content": f"{user}'s question"}])
        for user in ("bob", "alice")]
    assert [a.choices[0].message.content for a in answers] == [
        "echo: bob's question", "echo: alice's question"]


async def test_naming_a_model_switches_the_session_to_it(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    answer = await sdk.chat.completions.create(
        model="slow/echo", user="carol", messages=[{"role": "user", "content": "hi"}])
    assert answer.model == "slow/echo"
    models = await sdk.models.list()
    assert {"clawgate", "echo/echo"} <= {m.id for m in models.data}


async def test_bad_requests_get_openai_style_errors(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as no_user:
        await sdk.chat.completions.create(
            model="clawgate", messages=[{"role": "system", "content": "only a system"}])
    assert "needs a user message" in str(no_user.value)
    with pytest.raises(openai.BadRequestError) as unknown_model:
        await sdk.chat.completions.create(
            model="nowhere/x", messages=[{"role": "user", "content": "hi"}])
    assert "no provider named 'nowhere'" in str(unknown_model.value)
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model="clawgate", messages=[])


async def test_a_failing_model_is_an_error_not_a_reply(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(
            model="broken/echo", user="dave", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    assert "the API key was refused" in str(caught.value)


async def test_the_openapi_document_matches_the_routes(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
        too_big = await http.post(
            "/v1/chat/completions", content=b"x" * 2_000_000,
            headers={"Authorization": f"Bearer {gateway.token}",
                     "Content-Type": "application/json"})
    assert set(document["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/v1/chat/completions", "/v1/models"}
    operation = document["paths"]["/v1/chat/completions"]["post"]
    schema_name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_name.rsplit("/", 1)[-1]]
    assert {"model", "messages", "stream", "user"} <= set(schema["properties"])
    assert too_big.status_code == 413


async def test_a_streaming_client_that_goes_away_stops_its_run(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    store = gateway.runtime.store
    chunks = await sdk.chat.completions.create(
        model="hang/echo", user="erin", stream=True,
        messages=[{"role": "user", "content": "think forever"}])
    first = await anext(aiter(chunks))
    assert first.choices[0].delta.role == "assistant"
    session = await store.get_session("openai:erin")
    assert session is not None
    run = await _latest_run(gateway, session.id, "running")

    await chunks.close()  # what a UI's Stop button does: it drops the connection

    stopped = await _latest_run(gateway, session.id, "killed")
    assert stopped.id == run.id
    assert "disconnected" in (stopped.error or "")
    answered = await sdk.chat.completions.create(
        model="echo/echo", user="erin", messages=[{"role": "user", "content": "still there?"}])
    assert (answered.choices[0].message.content or "").endswith("still there?")


async def _latest_run(gateway: RunningGateway, session_id: str, status: str) -> Run:
    for _ in range(100):  # bounded: 5 s
        runs = await gateway.runtime.store.list_runs(session_id, 1)
        if runs and runs[0].status == status:
            return runs[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the session's latest run did not become {status}: {runs}")
