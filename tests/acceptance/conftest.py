from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clawgate.testing.model_server import FakeModelServer, ModelServerThread
from tests.acceptance.cli import Home


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    home = Home(tmp_path / "home")
    yield home
    home.cleanup()


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    """The fake OpenAI and Anthropic endpoints, on a thread of their own (the CLI under test
    runs as a subprocess the test waits for)."""
    with ModelServerThread() as server:
        yield server
