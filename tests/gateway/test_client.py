"""The gateway client against a server that breaks the protocol: a clear error, not None."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.server import ServerConnection, serve

from clawgate.gateway.client import GatewayClient, GatewayError


@pytest.mark.parametrize("payload", [{}, {"payload": None}, {"payload": ["a", "list"]}])
async def test_an_ok_response_without_a_payload_object_is_an_error(
    payload: dict[str, object],
) -> None:
    async def answer(connection: ServerConnection) -> None:
        async for text in connection:
            request = json.loads(text)
            await connection.send(json.dumps(
                {"type": "res", "id": request["id"], "ok": True, **payload}))

    async with serve(answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with await GatewayClient.connect(f"http://127.0.0.1:{port}", None) as client:
            with pytest.raises(GatewayError) as caught:
                await client.request("status")
    assert caught.value.code == "bad_frame"
    assert "payload" in str(caught.value)
