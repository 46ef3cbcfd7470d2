"""What /status shows: the model, the current or last run, the queue, and token use."""

from __future__ import annotations

from dataclasses import dataclass

from clawgate.domain import ModelRef, QueueSettings, Usage
from clawgate.store.protocol import SessionSummary


@dataclass(frozen=True, slots=True)
class StatusReport:
    key: str
    summary: SessionSummary | None  # None: no message has been sent to this key yet
    model: ModelRef  # the model that answers (the next reply, for a new session)
    queue: QueueSettings
    here: bool  # the current run is served by this process

    def describe(self) -> str:
        summary = self.summary
        session = summary.session if summary else None
        usage = session.usage if session else Usage()
        lines = [
            f"session   {self.key} ({session.id if session else 'no messages yet'})",
            f"model     {self.model} (provider {self.model.provider})",
            f"run       {self._run_line()}",
            f"queue     {self.queue.mode}, {summary.pending if summary else 0} waiting "
            f"(debounce {self.queue.debounce_ms} ms, cap {self.queue.cap}, "
            f"drop {self.queue.drop})",
            f"tokens    {usage.input_tokens} in, {usage.output_tokens} out",
        ]
        return "\n".join(lines)

    def _run_line(self) -> str:
        run = self.summary.latest_run if self.summary else None
        if run is None:
            return "none yet"
        if run.status.active:
            where = "here" if self.here else f"owner {run.owner_id}"
            return f"{run.id} {run.status} ({where})"
        seconds = (run.runtime_ms or 0) / 1000
        error = f": {run.error}" if run.error else ""
        return f"last {run.id} {run.status} after {seconds:.1f}s{error}"
