"""Waiting for what a request to the OpenAI-compatible API brought about (bounded polls of
the store)."""

from __future__ import annotations

import asyncio

from clawgate.domain import Fate, InboundMessage, Run, Session
from clawgate.gateway.server import RunningGateway


async def latest_run(gateway: RunningGateway, session_id: str, status: str) -> Run:
    for _ in range(100):  # bounded: 5 s
        runs = await gateway.runtime.store.list_runs(session_id, 1)
        if runs and runs[0].status == status:
            return runs[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the session's latest run did not become {status}: {runs}")


async def session_of(gateway: RunningGateway, key: str) -> Session:
    for _ in range(100):  # bounded: 5 s
        session = await gateway.runtime.store.get_session(key)
        if session is not None:
            return session
        await asyncio.sleep(0.05)
    raise AssertionError(f"no session {key} appeared")


async def inbound_count(gateway: RunningGateway, session_id: str, count: int) -> None:
    for _ in range(100):  # bounded: 5 s
        if len(await gateway.runtime.store.list_inbound(session_id)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the session did not get {count} messages")


async def decided(gateway: RunningGateway, message_id: str) -> InboundMessage:
    for _ in range(100):  # bounded: 5 s
        message = await gateway.runtime.store.get_message(message_id)
        if message is not None and message.fate is not Fate.PENDING:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {message_id} still waits")
