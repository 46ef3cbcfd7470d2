from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clawgate.store.protocol import Store
from clawgate.testing import ManualClock
from tests.stores import STORE_KINDS, StoreBackend


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=STORE_KINDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[StoreBackend]:
    backend = StoreBackend(request.param, tmp_path, clock)
    yield backend
    await backend.close()


@pytest.fixture
async def store(backend: StoreBackend) -> Store:
    return await backend.handle()
