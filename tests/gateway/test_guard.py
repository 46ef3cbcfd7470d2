"""Other web sites, other host names and callers without the token are turned away first."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from clawgate.gateway.server import RunningGateway
from tests.gateway.conftest import restarted


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws"


@pytest.fixture
async def open_gateway(home: Path) -> AsyncIterator[RunningGateway]:
    """A gateway with ``auth = "none"``: any local program may use it, no web site may."""
    config = home / "config.toml"
    config.write_text(config.read_text() + '\n[gateway]\nauth = "none"\n')
    async with restarted(home) as gateway:
        yield gateway


async def test_a_page_on_another_site_cannot_open_the_websocket(
    open_gateway: RunningGateway,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(_ws(open_gateway.url), origin=Origin("http://evil.example")):
            pass
    assert refused.value.response.status_code == 403
    port = open_gateway.url.rsplit(":", 1)[1]
    async with connect(_ws(open_gateway.url),
                       origin=Origin(f"http://127.0.0.1:{port}")) as own:
        await own.send('{"type": "req", "id": 1, "method": "status", "params": {}}')
        assert '"ok": true' in await own.recv()


async def test_a_cross_site_post_changes_nothing(open_gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=open_gateway.url) as http:
        answer = await http.post(
            "/v1/chat/completions", headers={"Origin": "http://evil.example",
                                             "Content-Type": "text/plain"},
            content='{"model": "clawgate", "messages": [{"role": "user", "content": "hi"}]}')
    assert answer.status_code == 403
    assert "other web sites" in answer.json()["error"]["message"]
    assert await open_gateway.runtime.store.get_session("openai") is None


async def test_a_name_that_only_resolves_to_loopback_is_refused(
    open_gateway: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=open_gateway.url) as http:
        rebound = await http.get("/v1/models", headers={"Host": "attacker.example"})
        local = await http.get("/v1/models", headers={"Host": "localhost"})
    assert rebound.status_code == 403
    assert local.status_code == 200


@pytest.mark.parametrize("body", [b"{", b"x" * 2_000_000])
async def test_without_the_token_the_answer_is_401_whatever_the_body(
    gateway: RunningGateway, body: bytes
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/v1/chat/completions", content=body,
                                 headers={"Content-Type": "application/json"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert (await gateway.runtime.store.counts()).sessions == 0


async def test_the_page_icon_is_served_without_the_token(gateway: RunningGateway) -> None:
    """Browsers fetch it on their own, without the token: no 401 in the console or logs."""
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        page = (await http.get("/")).text
        declared = re.search(r'<link rel="icon" href="([^"]+)"', page)
        assert declared is not None
        icons = [await http.get(declared[1]), await http.get("/favicon.ico")]
    for icon in icons:
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.text.startswith("<svg")


async def _chunked(body: bytes, piece: int = 65_536) -> AsyncIterator[bytes]:
    """The body in pieces, with no declared length (``Transfer-Encoding: chunked``)."""
    for start in range(0, len(body), piece):
        yield body[start:start + piece]


@pytest.mark.parametrize("padding", [2_000_000, 10])
async def test_a_body_over_the_limit_is_refused_however_it_is_sent(
    gateway: RunningGateway, padding: int
) -> None:
    """The limit counts the bytes that arrive, not only the ``Content-Length`` declared."""
    body = json.dumps({"model": "clawgate", "user": "ivy", "padding": "x" * padding,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", content=_chunked(body),
                                 headers=headers)
    assert "content-length" not in answer.request.headers
    if padding < 1_000_000:  # a small chunked body is served as any other
        assert answer.status_code == 200
        return
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "1048576 bytes" in error["message"]
    assert await gateway.runtime.store.get_session("openai:ivy") is None
