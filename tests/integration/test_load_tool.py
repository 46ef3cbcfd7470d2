"""The load tool (``clawgate.testing.load``) against a gateway that stops answering."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve

from clawgate.testing.load import Pace, run_load


async def _never_answer(connection: ServerConnection) -> None:
    async for _ in connection:  # takes every request, answers none (a wedged gateway)
        pass


async def test_a_gateway_that_never_answers_ends_the_load_with_timeouts_counted() -> None:
    async with serve(_never_answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(30):  # a guard: before, the clients waited forever
            stats = await run_load(f"http://127.0.0.1:{port}", None, clients=3, sessions=2,
                                   seconds=0.2, pace=Pace(request_timeout_s=0.2))

    assert stats.errors["timeout"] >= 3  # every client's first request, at least
    assert set(stats.errors) == {"timeout"}
    assert not stats.acked
    assert not stats.dropped_connections
