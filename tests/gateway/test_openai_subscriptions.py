"""The OpenAI-compatible API listens to a session's events only while a reply streams: a
request that fails, or a stream nobody reads, leaves nothing behind on the event bus (each
leftover subscription would buffer up to 1,000 events of its session for good)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import Message, Scope

from clawgate.gateway.server import RunningGateway


@pytest.mark.parametrize("stream", [False, True])
async def test_requests_refused_while_shutting_down_leave_no_subscription(
    gateway: RunningGateway, stream: bool
) -> None:
    await gateway.runtime.close(grace=0)  # what a shutdown does while connections stay open
    headers = {"Authorization": f"Bearer {gateway.token}", "X-Clawgate-Session": "zed"}
    body = {"model": "clawgate", "stream": stream,
            "messages": [{"role": "user", "content": "anyone there?"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        for _ in range(20):
            answer = await http.post("/v1/chat/completions", headers=headers, json=body)
            assert answer.status_code == 503
            assert answer.json()["error"]["type"] == "service_unavailable"
    assert gateway.runtime.bus.subscriber_count("zed") == 0


async def test_a_stream_whose_client_left_before_its_first_chunk_leaves_no_subscription(
    gateway: RunningGateway,
) -> None:
    app = gateway.server.config.app
    assert isinstance(app, FastAPI)
    body = json.dumps({"model": "clawgate", "user": "ida", "stream": True,
                       "messages": [{"role": "user", "content": "hello?"}]}).encode()
    started: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:  # ASGI 2.4: the client has gone away
        started.append(message)
        raise OSError("the client closed the connection")

    with pytest.raises(ClientDisconnect):  # what the server is told
        await app(_post(gateway, "/v1/chat/completions", body), receive, send)

    assert started[0]["type"] == "http.response.start"
    assert started[0]["status"] == 200  # the message was accepted, its reply never read
    assert gateway.runtime.bus.subscriber_count("openai:ida") == 0
    outcome = await asyncio.wait_for(_outcome(gateway, "openai:ida"), 10)
    assert outcome == "echo: hello?"  # answered in the session all the same


def _post(gateway: RunningGateway, path: str, body: bytes) -> Scope:
    headers = {"host": "127.0.0.1", "authorization": f"Bearer {gateway.token}",
               "content-type": "application/json", "content-length": str(len(body))}
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}


async def _outcome(gateway: RunningGateway, key: str) -> str:
    store = gateway.runtime.store
    while True:  # bounded by the caller
        session = await store.get_session(key)
        entries = await store.transcript(session.id) if session else []
        if entries and entries[-1].role == "assistant":
            return entries[-1].text
        await asyncio.sleep(0.05)
