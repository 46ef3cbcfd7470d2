"""What the README says about the token is what the gateway does: each path it names as
served without the token is, and every other path asks for the token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from clawgate.gateway.server import RunningGateway

README = Path(__file__).resolve().parents[2] / "README.md"
#: One path of each kind the gateway serves (a folder, as the README names it, stands for a
#: file in it).
SERVED = ("/", "/static/app.js", "/favicon.ico", "/healthz", "/readyz", "/openapi.json",
          "/metrics", "/v1/models", "/v1/models/clawgate")


def _named_open() -> set[str]:
    """The paths README's "Served without it" sentence names."""
    text = " ".join(README.read_text().split())
    sentence = re.search(r"Served without it, (.*?)\.(?: |$)", text)
    assert sentence is not None, "the README no longer says what is served without the token"
    return set(re.findall(r"`(/[^`]*)`", sentence[1]))


def _named(path: str, named: set[str]) -> bool:
    """Whether ``path`` is named, itself or by its folder (``/static/``; ``/`` is the page)."""
    return path in named or any(
        n != "/" and n.endswith("/") and path.startswith(n) for n in named)


@pytest.mark.parametrize("path", SERVED)
async def test_the_readme_names_exactly_what_answers_without_the_token(
    gateway: RunningGateway, path: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.get(path)
    assert (answer.status_code != 401) == _named(path, _named_open()), answer.status_code
