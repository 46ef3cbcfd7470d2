"""What /status shows: the model, the current or last run, the queue, and token use."""

from __future__ import annotations

from dataclasses import dataclass

from clawgate.domain import ModelRef, QueueSettings
from clawgate.store.protocol import SessionSummary


@dataclass(frozen=True, slots=True)
class StatusReport:
    summary: SessionSummary
    model: ModelRef
    queue: QueueSettings
    here: bool  # the current run is served by this process

    def describe(self) -> str:
        session = self.summary.session
        lines = [
            f"session   {session.key} ({session.id})",
            f"model     {self.model} (provider {self.model.provider})",
            f"run       {self._run_line()}",
            f"queue     {self.queue.mode}, {self.summary.pending} waiting "
            f"(debounce {self.queue.debounce_ms} ms, cap {self.queue.cap}, "
            f"drop {self.queue.drop})",
            f"tokens    {session.usage.input_tokens} in, {session.usage.output_tokens} out",
        ]
        return "\n".join(lines)

    def _run_line(self) -> str:
        run = self.summary.latest_run
        if run is None:
            return "none yet"
        if run.status.active:
            where = "here" if self.here else f"owner {run.owner_id}"
            return f"{run.id} {run.status} ({where})"
        seconds = (run.runtime_ms or 0) / 1000
        error = f": {run.error}" if run.error else ""
        return f"last {run.id} {run.status} after {seconds:.1f}s{error}"
