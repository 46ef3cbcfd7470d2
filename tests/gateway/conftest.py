"""A real gateway on 127.0.0.1 (port 0), on a SQLite home of its own, with test providers:
``echo`` answers at once, ``slow`` after 300 ms, ``hang`` never (until stopped),
``trickle`` streams a word every 120 ms, ``broken`` refuses (as a revoked key would)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import openai
import pytest
from playwright.async_api import Browser

from clawgate import config
from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway, running
from tests.gateway.webpage import chromium

CONFIG = """
[models]
default = "echo/echo"
[providers.echo]
kind = "echo"
[providers.slow]
kind = "echo"
delay_ms = 300
[providers.hang]
kind = "echo"
fail = "hang"
[providers.trickle]
kind = "echo"
chunk_delay_ms = 120
[providers.broken]
kind = "echo"
fail = "auth"
[runtime]
poll_interval_ms = 20
shutdown_grace_seconds = 1
[queue]
mode = "followup"
debounce_ms = 0
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    return home


@asynccontextmanager
async def restarted(home: Path, port: int = 0) -> AsyncIterator[RunningGateway]:
    """A gateway on ``home`` (on ``port``; 0: any free one), until the block ends."""
    settings = config.load(home, env={})
    settings = dataclasses.replace(
        settings, gateway=dataclasses.replace(settings.gateway, port=port))
    async with running(settings) as gateway:
        yield gateway


@pytest.fixture
async def gateway(home: Path) -> AsyncIterator[RunningGateway]:
    async with restarted(home) as gateway:
        yield gateway


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[GatewayClient]:
    async with await GatewayClient.connect(gateway.url, gateway.token) as client:
        yield client


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (the web chat tests are skipped loudly without it)."""
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key=gateway.token, base_url=f"{gateway.url}/v1",
                                max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def retrying_sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK as people use it: it retries a 409 or a 5xx twice unless told not to."""
    client = openai.AsyncOpenAI(api_key=gateway.token, base_url=f"{gateway.url}/v1")
    yield client
    await client.close()
