"""``/metrics`` in the Prometheus text format: what happened (counters), and how things are
(gauges read from the store's indexes at each scrape)."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections import Counter

from clawgate.domain import CUT_SHORT_OUTCOMES
from clawgate.runtime.bus import EventBus, RunChanged
from clawgate.store.protocol import Store

#: Run duration buckets, in seconds.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Attempt outcomes that are no failure of the provider: an answer, or a stop cutting it short.
NOT_PROVIDER_ERRORS = CUT_SHORT_OUTCOMES | {"answered"}


class Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            label = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{le="{label}"}} {running}')
        out += [f"{name}_sum {self.total:.6f}", f"{name}_count {running}"]
        return out


class Metrics:
    def __init__(self, bus: EventBus, store: Store) -> None:
        self._bus = bus
        self._store = store
        self.runs_ended: Counter[str] = Counter()
        self.provider_errors: Counter[str] = Counter()
        self.run_seconds = Histogram(BUCKETS)
        self.connections = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="clawgate metrics")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            async for event in self._bus.subscribe(maxsize=10_000):
                if isinstance(event, RunChanged) and event.run.status.terminal:
                    self.runs_ended[str(event.run.status)] += 1
                    self.run_seconds.observe((event.run.runtime_ms or 0) / 1000)
                    for attempt in event.attempts:
                        if attempt.outcome not in NOT_PROVIDER_ERRORS:
                            self.provider_errors[attempt.outcome] += 1

    async def render(self, accepted: dict[str, int]) -> str:
        counts = await self._store.counts()
        lines = [
            "# HELP clawgate_runs_ended_total Runs that ended in this process, by status.",
            "# TYPE clawgate_runs_ended_total counter",
            *(f'clawgate_runs_ended_total{{status="{s}"}} {n}'
              for s, n in sorted(self.runs_ended.items())),
            "# HELP clawgate_runs_active Runs queued or running now (every process).",
            "# TYPE clawgate_runs_active gauge",
            f"clawgate_runs_active {counts.active_runs}",
            "# HELP clawgate_messages_waiting Accepted messages with no fate yet: queue depth.",
            "# TYPE clawgate_messages_waiting gauge",
            f"clawgate_messages_waiting {counts.waiting}",
            "# HELP clawgate_sessions Current sessions.",
            "# TYPE clawgate_sessions gauge",
            f"clawgate_sessions {counts.sessions}",
            "# HELP clawgate_messages_accepted_total Messages accepted by this gateway.",
            "# TYPE clawgate_messages_accepted_total counter",
            *(f'clawgate_messages_accepted_total{{channel="{c}"}} {n}'
              for c, n in sorted(accepted.items())),
            "# HELP clawgate_run_duration_seconds How long runs took, start to end.",
            "# TYPE clawgate_run_duration_seconds histogram",
            *self.run_seconds.lines("clawgate_run_duration_seconds"),
            "# HELP clawgate_provider_errors_total Failed provider attempts, by kind.",
            "# TYPE clawgate_provider_errors_total counter",
            *(f'clawgate_provider_errors_total{{kind="{k}"}} {n}'
              for k, n in sorted(self.provider_errors.items())),
            "# HELP clawgate_websocket_connections Open WebSocket connections.",
            "# TYPE clawgate_websocket_connections gauge",
            f"clawgate_websocket_connections {self.connections}",
        ]
        return "\n".join(lines) + "\n"
