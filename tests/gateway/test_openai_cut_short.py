"""A reply cut short (stopped, failed, timed out part-way) is never passed off as complete:
streamed, its text is followed by an ``error`` line (the SDK raises); not streamed, it is an
error whose body keeps the text written so far."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from clawgate.gateway.openai_models import ErrorBody
from clawgate.gateway.server import RunningGateway
from clawgate.testing.model_server import FakeModelServer, Hang, StreamError
from tests.gateway.conftest import CONFIG, restarted
from tests.gateway.openai_helpers import latest_run, session_of

FAKE = """
[providers.fake]
kind = "openai"
base_url = "{url}"
"""


@pytest.fixture
async def model_server() -> AsyncIterator[FakeModelServer]:
    server = await FakeModelServer.start()
    server.on_model("fails", StreamError(type="server_error", message="boom",
                                         after=("partial ", "text")))
    server.on_model("hangs", Hang(after=("partial ", "text")))
    yield server
    await server.close()


@pytest.fixture
async def faked(tmp_path: Path, model_server: FakeModelServer) -> AsyncIterator[RunningGateway]:
    """A gateway whose ``fake`` provider is the model server, with a run timeout of 1 s."""
    home = tmp_path / "faked"
    home.mkdir()
    config = CONFIG.replace("[runtime]", "[runtime]\nrun_timeout_seconds = 1")
    (home / "config.toml").write_text(config + FAKE.format(url=model_server.openai_base_url))
    async with restarted(home) as gateway:
        yield gateway


async def _ask(gateway: RunningGateway, model: str, stream: bool) -> tuple[str, Any]:
    """The text a request got, and the SDK's error (None if there was none)."""
    sdk = openai.AsyncOpenAI(api_key=gateway.token, base_url=f"{gateway.url}/v1",
                             max_retries=0)
    text = ""
    async with sdk:
        try:
            if not stream:
                answer = await sdk.chat.completions.create(
                    model=model, user="pat", messages=[{"role": "user", "content": "go"}])
                return answer.choices[0].message.content or "", None
            chunks = await sdk.chat.completions.create(
                model=model, user="pat", stream=True,
                messages=[{"role": "user", "content": "go"}])
            async for chunk in chunks:
                text += "".join(c.delta.content or "" for c in chunk.choices)
        except openai.APIError as exc:
            return text, exc
    return text, None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "status", "kind", "code"), [
    ("fake/fails", 502, "provider_error", "failed"),
    ("fake/hangs", 504, "provider_error", "timeout"),
], ids=["failed", "timeout"])
async def test_a_reply_cut_short_by_the_model_is_an_error_that_keeps_its_text(
    faked: RunningGateway, stream: bool, model: str, status: int, kind: str, code: str
) -> None:
    text, error = await _ask(faked, model, stream)

    assert isinstance(error, openai.APIError)
    assert (error.type, error.code) == (kind, code)
    assert isinstance(error.body, dict)
    assert error.body["clawgate"]["status"] == code
    assert error.body["clawgate"]["reply"] == "partial text"  # what was written, kept
    if stream:
        assert text == "partial text"  # streamed before the error
    else:
        assert isinstance(error, openai.APIStatusError)
        assert error.status_code == status
        assert error.response.headers["x-should-retry"] == "false"
        ErrorBody.model_validate(error.response.json(), strict=True)
    session = await session_of(faked, "openai:pat")
    entries = await faked.runtime.store.transcript(session.id)
    assert (entries[-1].text, entries[-1].stopped) == ("partial text", True)


async def test_a_stream_stopped_part_way_ends_with_an_error_and_no_finish_stop(
    gateway: RunningGateway,
) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}", "X-Clawgate-Session": "quin"}
    body = {"model": "trickle/echo", "stream": True,
            "messages": [{"role": "user", "content": "one two three four five six seven"}]}
    lines: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http, http.stream(
            "POST", "/v1/chat/completions", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content": "echo:"' in line:
                await gateway.runtime.stop("quin")  # after the first word
            if line.startswith("data: "):
                lines.append(line.removeprefix("data: "))

    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    said = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c.get("choices"))
    assert said.startswith("echo:")
    errors = [c["error"] for c in chunks if "error" in c]
    assert [(e["type"], e["code"], e["clawgate"]["reply"]) for e in errors] == [
        ("run_stopped", "killed", said)]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert [f for f in finishes if f] == ["length"]  # not "stop": the answer is not whole


async def test_a_reply_stopped_part_way_is_a_conflict_that_keeps_its_text(
    retrying_sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    asking = asyncio.create_task(retrying_sdk.chat.completions.create(
        model="trickle/echo", user="rae",
        messages=[{"role": "user", "content": "one two three four five six seven"}]))
    session = await session_of(gateway, "openai:rae")
    await latest_run(gateway, session.id, "running")
    for _ in range(100):  # bounded: 5 s, until the first words are written
        so_far = gateway.runtime.reply_so_far(session.id)
        if so_far is not None and so_far.text:
            break
        await asyncio.sleep(0.05)

    await gateway.runtime.stop("openai:rae")

    with pytest.raises(openai.ConflictError) as caught:
        await asyncio.wait_for(asyncio.shield(asking), 10)
    assert caught.value.code == "killed"
    assert isinstance(caught.value.body, dict)
    kept = caught.value.body["clawgate"]
    assert kept["status"] == "killed"
    assert kept["reply"].startswith("echo:")  # the words written before the stop
    assert len(await gateway.runtime.store.list_runs(session.id)) == 1  # not sent again
