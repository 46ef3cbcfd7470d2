"""Every ``toml`` snippet in the README is a config.toml the real loader accepts on its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clawgate.config import parse

README = Path(__file__).resolve().parents[2] / "README.md"
SNIPPETS = re.findall(r"^```toml\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def test_the_readme_shows_the_config_and_each_provider() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet-{n}" for n in range(len(SNIPPETS))])
def test_each_readme_snippet_loads_on_its_own(snippet: str, tmp_path: Path) -> None:
    settings = parse(snippet, tmp_path / "config.toml", tmp_path, env={})
    names = {p.name for p in settings.providers}
    assert settings.runtime.default_model.provider in names
