"""Building the configured providers, by kind."""

from __future__ import annotations

from collections.abc import Iterable

from clawgate.providers.base import Provider
from clawgate.providers.echo import EchoConfig, EchoProvider

#: The configuration of one provider (one per kind; more kinds come with their adapters).
ProviderConfig = EchoConfig


def build(configs: Iterable[ProviderConfig]) -> dict[str, Provider]:
    return {c.name: EchoProvider(c.name, delay_ms=c.delay_ms, fail=c.fail) for c in configs}
