from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.harness import Harness
from tests.stores import StoreBackend


@pytest.fixture
async def harness(backend: StoreBackend) -> AsyncIterator[Harness]:
    harness = Harness(backend)
    yield harness
    await harness.close()
