"""``clawgate chat`` through the gateway (``RemoteChat``): how it learns a message's answer."""

from __future__ import annotations

import asyncio
from typing import Any

from clawgate.channels.terminal import ChatEvent
from clawgate.cli.chat import RemoteChat
from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway


class CountingClient(GatewayClient):
    """A gateway client that counts the requests it sends, by method."""

    sent: dict[str, int]

    async def request(self, method: str, **params: Any) -> dict[str, Any]:
        self.sent[method] = self.sent.get(method, 0) + 1
        return await super().request(method, **params)


async def test_waiting_for_an_answer_reads_the_session_as_runs_end_not_over_and_over(
    gateway: RunningGateway,
) -> None:
    client = await CountingClient.connect(gateway.url, gateway.token)
    assert isinstance(client, CountingClient)
    client.sent = {}
    async with client:
        await client.request("events.subscribe", sessions=["r1"])
        await client.request("sessions.patch", session="r1", model="trickle/echo")
        chat = RemoteChat(client, "r1")
        shown: list[ChatEvent] = []

        async def show() -> None:  # (as the chat's printer does)
            async for event in chat.events():
                shown.append(event)

        printer = asyncio.create_task(show())
        sent = await chat.handle("one two three four five six seven eight nine ten")
        assert not isinstance(sent, str)
        reads = client.sent.get("sessions.get", 0)
        run_id = await chat.wait_for(sent.message_id)  # a reply of a word every 120 ms
        chat.close()
        await printer

    assert run_id is not None
    assert client.sent["sessions.get"] - reads <= 3  # once, and again as its run ended
