"""The runtime's knobs, as one frozen object built from the config at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from clawgate.domain import ModelRef, QueueSettings
from clawgate.providers.settings import RoutingPolicy


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    default_model: ModelRef = field(default_factory=lambda: ModelRef("echo", "echo"))
    queue: QueueSettings = field(default_factory=QueueSettings)
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)  # fallbacks, aliases, ...
    system_prompt: str = ""  # what the model is told before every conversation
    lease: timedelta = timedelta(seconds=15)
    run_timeout: timedelta = timedelta(seconds=600)
    #: How often a runtime looks in the store for stop requests and work from other processes.
    poll_interval: float = 0.1
    #: How many transcript entries a model call sees.
    context_entries: int = 200
    #: Runs this process works on at once. Messages beyond it wait, persisted and unclaimed,
    #: so an overloaded process never holds more leases than it can renew.
    max_concurrent_runs: int = 64
    #: On shutdown, how long running turns may finish before they end ``interrupted``.
    shutdown_grace: float = 5.0

    @property
    def renew_every(self) -> timedelta:
        """How often an owner renews its leases (and looks for dead owners): three times a
        lease, so one late renewal never loses a run."""
        return self.lease / 3
