from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clawgate.testing import ManualClock
from clawgate.testing.model_server import FakeModelServer
from tests.integration.harness import Harness
from tests.integration.model_world import World
from tests.stores import StoreBackend


@pytest.fixture
async def harness(backend: StoreBackend) -> AsyncIterator[Harness]:
    harness = Harness(backend)
    yield harness
    await harness.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    world = World(await FakeModelServer.start(), tmp_path / "c.db", ManualClock(), [])
    yield world
    for runtime in world.runtimes:
        await runtime.close(grace=0)
        await runtime.store.close()
    await world.server.close()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which new files are readable by everyone."""
    old = os.umask(0o022)
    yield
    os.umask(old)
