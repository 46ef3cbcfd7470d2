"""The guard's reading of Host and Origin headers."""

from __future__ import annotations

import pytest

from clawgate.gateway.guard import hostname, same_origin


@pytest.mark.parametrize(("host", "name"), [
    ("127.0.0.1:18789", "127.0.0.1"), ("[::1]:18789", "[::1]"), ("LocalHost", "localhost"),
    ("attacker.example:18789", "attacker.example"), ("", "")])
def test_the_name_part_of_a_host_header(host: str, name: str) -> None:
    assert hostname(host) == name


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://127.0.0.1:18789", "127.0.0.1:18789", True),
    ("http://LOCALHOST:18789", "localhost:18789", True),
    ("http://127.0.0.1:18790", "127.0.0.1:18789", False),  # another local service
    ("http://evil.example", "127.0.0.1:18789", False),
    ("null", "127.0.0.1:18789", False),  # a sandboxed frame or a file:// page
    ("file:///tmp/x.html", "127.0.0.1:18789", False)])
def test_only_the_gateways_own_address_is_the_same_origin(
    origin: str, host: str, same: bool
) -> None:
    assert same_origin(origin, host) is same
