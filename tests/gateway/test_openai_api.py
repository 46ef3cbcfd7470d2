"""Any OpenAI client can talk to a clawgate agent: the official SDK against the gateway."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion as Completion

from clawgate.domain import DropPolicy, DropReason, Fate, QueuePatch
from clawgate.gateway.openai_models import (
    ChatCompletion,
    ChatCompletionChunk,
    ErrorBody,
    ErrorDetail,
    ModelEntry,
    ModelList,
)
from clawgate.gateway.server import RunningGateway
from tests.gateway.conftest import restarted
from tests.gateway.openai_helpers import decided, inbound_count, latest_run, session_of


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
    pieces, finish, usage, models = [], None, None, set()
    async for chunk in chunks:
        models.add(chunk.model)
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
    assert models == {"echo/echo"}  # every chunk names the model that answers


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
    ids = set()
    for _ in range(2):
        answer = await sdk.chat.completions.create(
            model="clawgate", user="bob", extra_headers={"Idempotency-Key": "req-1"},
            messages=[{"role": "user", "content": "just once"}])
        assert answer.choices[0].message.content == "echo: just once"
        ids.add(answer.id)
    assert len(ids) == 1  # the same answer
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
    assert no_user.value.param == "messages"
    with pytest.raises(openai.NotFoundError) as unknown_model:  # as OpenAI answers it
        await sdk.chat.completions.create(
            model="nowhere/x", messages=[{"role": "user", "content": "hi"}])
    assert "no provider named 'nowhere'" in str(unknown_model.value)
    assert (unknown_model.value.code, unknown_model.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as no_messages:
        await sdk.chat.completions.create(model="clawgate", messages=[])
    assert no_messages.value.param == "messages"


# --- what clawgate cannot honour is refused, not ignored ----------------------------------


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "What is the weather in Paris?"},
     {"role": "assistant", "content": None, "tool_calls": [{
         "id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
     {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"}],
    [{"role": "user", "content": "Write a haiku"},
     {"role": "assistant", "content": "Autumn moon"}],
], ids=["tool-result", "assistant-prefill"])
async def test_a_request_that_does_not_end_with_the_users_turn_is_refused(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway, messages: list[dict[str, Any]]
) -> None:
    """The last user message is not sent again as if it were new."""
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="clawgate", user="hal",
                                          messages=messages)  # type: ignore[arg-type]
    assert caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"
    assert "tool results and assistant prefill" in caught.value.message
    assert (await gateway.runtime.store.counts()).sessions == 0


async def test_system_messages_after_the_users_turn_do_not_hide_it(
    sdk: openai.AsyncOpenAI,
) -> None:
    answer = await sdk.chat.completions.create(model="clawgate", messages=[
        {"role": "user", "content": "hello"}, {"role": "developer", "content": "be brief"}])
    assert answer.choices[0].message.content == "echo: hello"


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.mark.parametrize(("asked", "param"), [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "weather"}}],
      "tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "weather"}}],
      "tool_choice": {"type": "function", "function": {"name": "weather"}}}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}}}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                 IMAGE]}]}, "messages.[0].content.[1].type"),
], ids=["n", "tool-required", "tool-named", "json-object", "json-schema", "logprobs",
        "image"])
async def test_what_clawgate_cannot_honour_is_refused_by_name(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway, asked: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {"model": "clawgate", "user": "ike",
                               "messages": [{"role": "user", "content": "hi"}], **asked}
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(**request)
    assert (caught.value.type, caught.value.param) == ("invalid_request_error", param)
    assert (await gateway.runtime.store.counts()).sessions == 0  # nothing was sent


async def test_what_clawgate_can_answer_as_asked_is_accepted(sdk: openai.AsyncOpenAI) -> None:
    answer = await sdk.chat.completions.create(
        model="clawgate", n=1, tool_choice="auto", response_format={"type": "text"},
        tools=[{"type": "function", "function": {"name": "weather"}}], temperature=0.2,
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi "},
                                               {"type": "text", "text": "there"}]}])
    assert [c.message.content for c in answer.choices] == ["echo: hi there"]
    assert answer.choices[0].message.tool_calls is None


async def test_a_failing_model_is_an_error_not_a_reply_and_not_a_resent_message(
    retrying_sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await retrying_sdk.chat.completions.create(
            model="broken/echo", user="dave", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    assert "the API key was refused" in str(caught.value)
    session = await session_of(gateway, "openai:dave")
    store = gateway.runtime.store
    assert [m.text for m in await store.list_inbound(session.id)] == ["hi"]  # sent once
    assert [r.status for r in await store.list_runs(session.id)] == ["failed"]
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_the_openapi_document_matches_the_routes(gateway: RunningGateway) -> None:
    auth = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
        too_big = await http.post(
            "/v1/chat/completions", content=b"x" * 2_000_000,
            headers={**auth, "Content-Type": "application/json"})
        answered = await http.post("/v1/chat/completions", headers=auth, json={
            "model": "clawgate", "messages": [{"role": "user", "content": "hi"}]})
        refused = await http.post("/v1/chat/completions", headers=auth, json={
            "model": "clawgate", "messages": []})
        models = await http.get("/v1/models", headers=auth)
        refused_models = [await http.get(path) for path in ("/v1/models", "/v1/models/x")]
    streamed = await _streamed(gateway, {
        "model": "clawgate", "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}]})
    assert set(document["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/v1/chat/completions", "/v1/models",
        "/v1/models/{model}"}
    operation = document["paths"]["/v1/chat/completions"]["post"]
    schema_name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_name.rsplit("/", 1)[-1]]
    assert {"model", "messages", "stream", "user"} <= set(schema["properties"])
    n = next(s for s in schema["properties"]["n"]["anyOf"] if s.get("type") == "integer")
    assert (n["minimum"], n["maximum"]) == (1, 1)  # more answers than one are refused
    responses = operation["responses"]
    assert set(responses) == {
        "200", "400", "401", "403", "404", "409", "413", "422", "500", "502", "503", "504"}
    assert {code for code, answer in responses.items() if "x-should-retry" in answer.get(
        "headers", {})} == {"409", "500", "502", "503", "504"}
    assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
    assert operation["security"] == [{"HTTPBearer": []}]
    # what the document describes is what the routes send
    described = {name.rsplit("/", 1)[-1] for name in (
        responses["200"]["content"]["application/json"]["schema"]["$ref"],
        responses["400"]["content"]["application/json"]["schema"]["$ref"])}
    assert described == {"ChatCompletion", "ErrorBody"}
    ChatCompletion.model_validate(answered.json(), strict=True)
    for failed in (too_big, refused):
        ErrorBody.model_validate(failed.json(), strict=True)
    assert (too_big.status_code, refused.status_code) == (413, 400)
    ModelList.model_validate(models.json(), strict=True)
    one = document["paths"]["/v1/models/{model}"]["get"]["responses"]
    assert one["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ModelEntry")
    assert one["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    # the header a reply carries, the token's refusals, the stream's chunks
    status_header = responses["200"]["headers"]["X-Clawgate-Run-Status"]
    assert answered.headers["X-Clawgate-Run-Status"] in status_header["schema"]["enum"]
    for path in ("/v1/models", "/v1/models/{model}"):
        listed = document["paths"][path]["get"]["responses"]
        assert {"401", "403"} <= set(listed)
        assert listed["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorBody")
    for refusal in refused_models:
        assert refusal.status_code == 401
        ErrorBody.model_validate(refusal.json(), strict=True)
    health = {path: set(document["paths"][path]["get"]["responses"])
              for path in ("/readyz", "/metrics")}
    assert health == {"/readyz": {"200", "503"}, "/metrics": {"200", "401", "403"}}
    stream_schema = responses["200"]["content"]["text/event-stream"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in stream_schema["oneOf"]} == {
        "ChatCompletionChunk", "ErrorBody"}
    assert {"ChatCompletionChunk", "ChunkChoice", "ChunkDelta"} <= set(
        document["components"]["schemas"])
    for chunk in streamed:
        ChatCompletionChunk.model_validate(chunk, strict=True)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"])  # every name it uses, it has


async def test_the_api_is_described_by_its_document_not_a_page_that_needs_the_internet(
    gateway: RunningGateway,
) -> None:
    """A docs page (Swagger UI, ReDoc) loads its scripts from a CDN: blank offline."""
    auth = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = await http.get("/openapi.json")  # no token needed
        pages = [await http.get(path, headers=auth) for path in ("/docs", "/redoc")]
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "clawgate gateway"
    assert [page.status_code for page in pages] == [404, 404]


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
    run = await latest_run(gateway, session.id, "running")

    await chunks.close()  # what a UI's Stop button does: it drops the connection

    stopped = await latest_run(gateway, session.id, "killed")
    assert stopped.id == run.id
    assert "disconnected" in (stopped.error or "")
    answered = await sdk.chat.completions.create(
        model="echo/echo", user="erin", messages=[{"role": "user", "content": "still there?"}])
    assert (answered.choices[0].message.content or "").endswith("still there?")


async def test_a_reply_stopped_before_a_word_is_an_error_not_an_empty_answer(
    retrying_sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    asking = asyncio.create_task(retrying_sdk.chat.completions.create(
        model="hang/echo", user="fay", messages=[{"role": "user", "content": "think"}]))
    session = await session_of(gateway, "openai:fay")
    await latest_run(gateway, session.id, "running")

    await gateway.runtime.stop("openai:fay")

    with pytest.raises(openai.ConflictError) as caught:  # the SDK's retry would hang again
        await asyncio.wait_for(asyncio.shield(asking), 10)
    assert caught.value.code == "killed"
    runs = await gateway.runtime.store.list_runs(session.id)
    assert [r.status for r in runs] == ["killed"]  # stopped once, sent once


async def test_a_stream_cut_short_by_a_shutdown_says_so_and_ends_cleanly(
    gateway: RunningGateway,
) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    body = {"model": "hang/echo", "user": "gus", "stream": True,
            "messages": [{"role": "user", "content": "think forever"}]}
    lines = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http, http.stream(
            "POST", "/v1/chat/completions", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"role": "assistant"' in line:
                gateway.stop()  # the run hangs: the grace period ends it interrupted
            if line.startswith("data: "):
                lines.append(line.removeprefix("data: "))

    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    errors = [c["error"] for c in chunks if "error" in c]
    assert [(e["type"], e["code"]) for e in errors] == [("run_interrupted", "interrupted")]
    assert chunks[-1]["clawgate"]["status"] == "interrupted"


async def test_stream_must_be_a_real_boolean(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/v1/chat/completions", headers={
            "Authorization": f"Bearer {gateway.token}"}, json={
            "model": "clawgate", "stream": "yes",
            "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 400
    assert "stream" in answer.json()["error"]["message"]
    assert answer.json()["error"]["param"] == "stream"


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "clawgate", "messages": [{"role": "robot", "content": "hi"}]}, "messages"),
    ({"model": "clawgate", "user": 7, "messages": [{"role": "user", "content": "hi"}]},
     "user"),
    ({"model": "clawgate", "user": "x" * 101,
      "messages": [{"role": "user", "content": "hi"}]}, "user"),
], ids=["no-model", "bad-role", "user-not-text", "user-too-long"])
async def test_a_bad_request_names_the_parameter_at_fault(
    gateway: RunningGateway, body: dict[str, Any], param: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/v1/chat/completions", json=body, headers={
            "Authorization": f"Bearer {gateway.token}"})
    assert answer.status_code == 400
    error = ErrorBody.model_validate(answer.json(), strict=True).error
    assert (error.type, error.param) == ("invalid_request_error", param)


async def test_a_wrong_token_is_refused_as_openai_refuses_a_wrong_key(
    gateway: RunningGateway,
) -> None:
    sdk = openai.AsyncOpenAI(api_key="not-the-token", base_url=f"{gateway.url}/v1",
                             max_retries=0)
    async with sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.models.list()
    assert (caught.value.type, caught.value.code) == ("invalid_request_error",
                                                      "invalid_api_key")
    async with httpx.AsyncClient(base_url=gateway.url) as http:  # outside /v1: as it was
        metrics = await http.get("/metrics")
    assert (metrics.status_code, metrics.json()["error"]["type"]) == (401, "unauthorized")


# --- text that cannot be stored ------------------------------------------------------------


async def test_a_lone_surrogate_is_a_bad_request_and_changes_nothing(
    gateway: RunningGateway,
) -> None:
    body = ('{"model": "slow/echo", "user": "kim", '
            '"messages": [{"role": "user", "content": "hi \\ud800"}]}')
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/v1/chat/completions", content=body.encode(), headers={
            "Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json"})
    assert answer.status_code == 400
    error = ErrorBody.model_validate(answer.json(), strict=True).error
    assert (error.type, error.param) == ("invalid_request_error", "messages")
    assert "surrogate" in error.message
    assert (await gateway.runtime.store.counts()).sessions == 0  # not even the model switch


# --- a shutdown while a request waits --------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_shutdown_answers_a_waiting_request_and_keeps_its_message_for_the_restart(
    home: Path, gateway: RunningGateway, stream: bool
) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}", "X-Clawgate-Session": "lee"}
    await gateway.runtime.set_model("lee", "hang/echo")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        def ask(text: str, stream: bool = False) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(http.post("/v1/chat/completions", headers=headers, json={
                "model": "clawgate", "stream": stream,
                "messages": [{"role": "user", "content": text}]}))

        first = ask("think forever")
        session = await session_of(gateway, "lee")
        await latest_run(gateway, session.id, "running")
        second = ask("then this", stream)
        await inbound_count(gateway, session.id, 2)  # accepted, waiting behind the first
        await gateway.runtime.set_model("lee", "echo/echo")  # the restart answers with echo

        gateway.stop()  # grace 1 s: the hanging run ends interrupted
        interrupted, waiting = await first, await second

    assert interrupted.status_code == 503
    assert interrupted.json()["error"]["type"] == "run_interrupted"
    assert interrupted.headers["x-should-retry"] == "false"  # accepted: a retry duplicates
    error = _waiting_error(waiting, stream)
    assert (error.type, error.code) == ("service_unavailable", "shutting_down")
    assert "kept" in error.message
    await asyncio.wait_for(asyncio.shield(gateway.serving), 10)
    async with restarted(home) as again:
        for _ in range(100):  # bounded: 5 s
            said = [(e.role, e.text) for e in await again.runtime.store.transcript(session.id)]
            if said[-1][0] == "assistant":
                break
            await asyncio.sleep(0.05)
    assert said[-2] == ("user", "then this")
    assert said[-1][0] == "assistant"
    assert said[-1][1].startswith("echo:")


def _waiting_error(answer: httpx.Response, stream: bool, status: int = 503) -> ErrorDetail:
    """The error a request got: its body, or a streamed one's ``error`` chunk."""
    if not stream:
        assert answer.status_code == status
        assert answer.headers["x-should-retry"] == "false"
        return ErrorBody.model_validate(answer.json(), strict=True).error
    lines = [x.removeprefix("data: ") for x in answer.text.splitlines() if x.startswith("data: ")]
    assert lines[-1] == "[DONE]"  # the stream ends cleanly
    errors = [json.loads(x)["error"] for x in lines[:-1] if "error" in json.loads(x)]
    assert len(errors) == 1
    return ErrorDetail.model_validate(errors[0], strict=True)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_dropped_message_is_a_conflict_that_says_why(
    gateway: RunningGateway, stream: bool
) -> None:
    await gateway.runtime.set_model("joe", "hang/echo")
    accepted = await gateway.runtime.send("joe", "think forever", channel="test")
    await latest_run(gateway, accepted.session.id, "running")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        asking = asyncio.create_task(http.post("/v1/chat/completions", json={
            "model": "clawgate", "stream": stream,
            "messages": [{"role": "user", "content": "then this"}]}, headers={
            "Authorization": f"Bearer {gateway.token}", "X-Clawgate-Session": "joe"}))
        await inbound_count(gateway, accepted.session.id, 2)  # waiting behind the first

        await gateway.runtime.stop("joe")  # stops the run, clears the waiting message
        dropped = await asking

    error = _waiting_error(dropped, stream, status=409)
    assert (error.type, error.code) == ("message_dropped", "stopped")
    assert "cleared by stop" in error.message


@pytest.mark.parametrize("stream", [False, True])
async def test_a_message_a_full_queue_drops_on_arrival_is_a_conflict_streamed_or_not(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway, stream: bool
) -> None:
    """Its fate is known before a stream would start: no 200 with an error inside."""
    await gateway.runtime.set_model("uma", "hang/echo")
    await gateway.runtime.set_queue("uma", QueuePatch(cap=1, drop=DropPolicy.NEW))
    first = await gateway.runtime.send("uma", "think forever", channel="test")
    await latest_run(gateway, first.session.id, "running")
    await gateway.runtime.send("uma", "waiting", channel="test")  # the queue is full

    with pytest.raises(openai.ConflictError) as caught:
        await sdk.chat.completions.create(
            model="clawgate", stream=stream, extra_headers={"X-Clawgate-Session": "uma"},
            messages=[{"role": "user", "content": "one too many"}])

    assert (caught.value.type, caught.value.code) == ("message_dropped", "queue_full_newest")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert gateway.runtime.bus.subscriber_count("uma") == 0
    await gateway.runtime.stop("uma")


# --- routes under /v1 --------------------------------------------------------------------


async def test_one_model_can_be_looked_up_and_an_unknown_one_is_404(
    sdk: openai.AsyncOpenAI,
) -> None:
    found = await sdk.models.retrieve("slow/echo")
    assert (found.id, found.object) == ("slow/echo", "model")
    assert (await sdk.models.retrieve("clawgate")).id == "clawgate"
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("nowhere/x")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as odd:
        await sdk.models.retrieve("echo/x\x00" + "y" * 5000)
    assert len(odd.value.message) < 600  # the name is not echoed back whole
    ModelEntry.model_validate(found.model_dump(), strict=True)


async def test_unknown_routes_and_methods_under_v1_answer_in_openai_shape(
    gateway: RunningGateway,
) -> None:
    auth = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        missing = await http.post("/v1/embeddings", headers=auth, json={"input": "x"})
        wrong = await http.get("/v1/chat/completions", headers=auth)
        elsewhere = await http.get("/nowhere", headers=auth)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert "/v1/embeddings" in missing.json()["error"]["message"]
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"
    for answer in (missing, wrong):
        ErrorBody.model_validate(answer.json(), strict=True)
    assert elsewhere.status_code == 404  # outside /v1, FastAPI's own shape


# --- a request sent again --------------------------------------------------------------------


async def test_replaying_an_idempotency_key_changes_nothing_and_other_text_is_refused(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    async def ask(model: str, text: str) -> Completion:
        return await sdk.chat.completions.create(
            model=model, user="hal", extra_headers={"Idempotency-Key": "req-9"},
            messages=[{"role": "user", "content": text}])

    first = await ask("echo/echo", "just once")
    again = await ask("slow/echo", "just once")  # a replay naming another model
    with pytest.raises(openai.UnprocessableEntityError) as reused:
        await ask("slow/echo", "something else")

    assert again.choices[0].message.content == first.choices[0].message.content
    assert reused.value.code == "idempotency_key_reused"
    ErrorBody.model_validate(reused.value.response.json(), strict=True)
    session = await session_of(gateway, "openai:hal")
    assert str(session.model) == "echo/echo"  # the replays switched nothing
    store = gateway.runtime.store
    assert [m.text for m in await store.list_inbound(session.id)] == ["just once"]
    assert len(await store.list_runs(session.id)) == 1


async def test_the_sdks_own_retries_after_a_timeout_are_one_message_and_one_run(
    gateway: RunningGateway,
) -> None:
    impatient = openai.AsyncOpenAI(api_key=gateway.token, base_url=f"{gateway.url}/v1",
                                   timeout=1.0)  # and its default: two retries
    try:
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(
                model="hang/echo", user="ivy", messages=[{"role": "user", "content": "ponder"}])
    finally:
        await impatient.close()
    session = await session_of(gateway, "openai:ivy")
    store = gateway.runtime.store
    assert [m.text for m in await store.list_inbound(session.id)] == ["ponder"]
    assert len(await store.list_runs(session.id)) == 1
    await gateway.runtime.stop("openai:ivy")  # the model would think for ever


async def test_a_retry_gets_the_answer_of_the_message_it_repeats_and_only_a_retry_does(
    gateway: RunningGateway,
) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}", "X-Clawgate-Session": "jo"}

    async def ask(http: httpx.AsyncClient, text: str, attempt: int) -> httpx.Response:
        return await http.post("/v1/chat/completions", json={
            "model": "slow/echo", "messages": [{"role": "user", "content": text}]},
            headers={**headers, "x-stainless-retry-count": str(attempt)})

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        first = asyncio.create_task(ask(http, "yes", 0))
        session = await session_of(gateway, "jo")
        await inbound_count(gateway, session.id, 1)
        first.cancel()  # the client gave up waiting: the SDK sends the request again
        retried = await ask(http, "yes", 1)
        said_again = await ask(http, "yes", 0)  # a first attempt: the user said it twice
        other = await ask(http, "no", 1)  # a retry of a request that never arrived

    assert retried.json()["choices"][0]["message"]["content"] == "echo: yes"
    assert said_again.json()["choices"][0]["message"]["content"] == "echo: yes"
    assert other.json()["choices"][0]["message"]["content"] == "echo: no"
    store = gateway.runtime.store
    assert [m.text for m in await store.list_inbound(session.id)] == ["yes", "yes", "no"]
    assert len(await store.list_runs(session.id)) == 3


# --- a streaming client that goes away while its message waits -------------------------------


async def test_a_streaming_client_that_goes_away_while_its_message_waits_withdraws_it(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    store, to_kay = gateway.runtime.store, {"X-Clawgate-Session": "kay"}
    await gateway.runtime.set_model("kay", "hang/echo")
    first = asyncio.create_task(sdk.chat.completions.create(
        model="clawgate", extra_headers=to_kay,
        messages=[{"role": "user", "content": "think forever"}]))
    session = await session_of(gateway, "kay")
    run = await latest_run(gateway, session.id, "running")
    chunks = await sdk.chat.completions.create(
        model="clawgate", stream=True, extra_headers=to_kay,
        messages=[{"role": "user", "content": "then this"}])
    await anext(aiter(chunks))
    await inbound_count(gateway, session.id, 2)  # waiting behind the first

    await chunks.close()  # the UI's Stop button, while the message still waits

    waiting = (await store.list_inbound(session.id))[-1]
    withdrawn = await decided(gateway, waiting.id)
    assert (withdrawn.fate, withdrawn.reason) == (Fate.DROPPED, DropReason.STOPPED)
    gateway.runtime.stop_run(run.id, "stopped by the test")
    with pytest.raises(openai.ConflictError):  # the first was stopped before a word
        await first
    assert [r.status for r in await store.list_runs(session.id)] == ["killed"]  # no reply to it


# --- chat commands -------------------------------------------------------------------------


async def test_a_chat_command_is_carried_out_and_its_reply_is_the_answer(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    async def say(text: str) -> str:
        answer = await sdk.chat.completions.create(
            model="clawgate", user="lou", messages=[{"role": "user", "content": text}])
        ChatCompletion.model_validate(answer.model_dump(), strict=True)  # as documented
        return answer.choices[0].message.content or ""

    async def say_streamed(text: str) -> str:
        chunks = await sdk.chat.completions.create(
            model="clawgate", user="lou", stream=True,
            messages=[{"role": "user", "content": text}])
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    assert await say("hello") == "echo: hello"
    old = await session_of(gateway, "openai:lou")

    fresh = await say("/new")  # what a user types in any OpenAI client's chat box
    status = await say_streamed("/status")

    new = await session_of(gateway, "openai:lou")
    assert new.id != old.id
    assert fresh.startswith(f"new session {new.id}")
    assert status.startswith(f"session   openai:lou ({new.id})")
    assert "echo/echo" in status
    store = gateway.runtime.store
    assert await store.list_inbound(new.id) == []  # a command is not a message to the model
    assert [e.text for e in await store.transcript(old.id)] == ["hello", "echo: hello"]
    with pytest.raises(openai.BadRequestError) as unknown:
        await say("/frobnicate")
    assert "unknown command /frobnicate" in str(unknown.value)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_command_whose_model_fails_is_a_provider_error_the_sdk_does_not_repeat(
    gateway: RunningGateway, stream: bool
) -> None:
    sent: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(request)

    sdk = openai.AsyncOpenAI(  # retries a 5xx twice unless told not to
        api_key=gateway.token, base_url=f"{gateway.url}/v1",
        http_client=httpx2.AsyncClient(event_hooks={"request": [record]}))
    async with sdk:
        for text in ("hello", "/model broken/echo"):
            await sdk.chat.completions.create(
                model="clawgate", user="max", messages=[{"role": "user", "content": text}])
        sent.clear()
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(
                model="clawgate", user="max", stream=stream,
                messages=[{"role": "user", "content": "/compact"}])

    assert caught.value.status_code == 502
    assert (caught.value.type, caught.value.code) == ("provider_error", "auth")
    assert "the API key was refused" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 1  # the model was asked to summarise once, not three times


# --- streamed and not: the same answer ---------------------------------------------------


async def _streamed(gateway: RunningGateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks of a streamed answer (``[DONE]`` checked and left out)."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        answer = await http.post("/v1/chat/completions", json={**body, "stream": True},
                                 headers={"Authorization": f"Bearer {gateway.token}"})
    lines = [x.removeprefix("data: ") for x in answer.text.splitlines()
             if x.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


async def test_with_include_usage_every_chunk_but_the_last_has_usage_null(
    gateway: RunningGateway,
) -> None:
    """As OpenAI streams it (its SDK's types say so): a client may read ``usage`` on any."""
    chunks = await _streamed(gateway, {
        "model": "clawgate", "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "count the words"}]})
    assert len(chunks) > 2
    assert [c["usage"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    without = await _streamed(gateway, {
        "model": "clawgate", "messages": [{"role": "user", "content": "again"}]})
    assert not any("usage" in c for c in without)


async def test_an_answer_is_named_after_its_message_streamed_or_not(
    sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    answer = await sdk.chat.completions.create(
        model="clawgate", user="una", messages=[{"role": "user", "content": "one"}])
    chunks = await _streamed(gateway, {
        "model": "clawgate", "user": "una", "messages": [{"role": "user", "content": "two"}]})
    session = await session_of(gateway, "openai:una")
    first, second = await gateway.runtime.store.list_inbound(session.id)
    assert answer.id == f"chatcmpl-{first.id}"
    assert {c["id"] for c in chunks} == {f"chatcmpl-{second.id}"}
