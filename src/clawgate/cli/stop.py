"""``clawgate stop``: stop a session's run from any process, and say what was done."""

from __future__ import annotations

import argparse
import json
import sys
import time

from clawgate.cli.common import OK, PROBLEM, USAGE, open_app
from clawgate.cli.remote import connect_gateway
from clawgate.clock import SystemClock
from clawgate.config import Settings
from clawgate.domain import Run, check_key
from clawgate.gateway.client import GatewayClient
from clawgate.runtime.owner import this_process
from clawgate.runtime.recovery import recover
from clawgate.runtime.stopping import StopReport, stop_and_wait
from clawgate.views import Json


async def main(args: argparse.Namespace, settings: Settings) -> int:
    key = check_key(args.session)
    client = await connect_gateway(settings)
    if client is not None:
        async with client:
            return await _via_gateway(client, key, args)
    return await _in_process(settings, key, args)


async def _via_gateway(client: GatewayClient, key: str, args: argparse.Namespace) -> int:
    started = time.monotonic()
    result = await client.request("chat.abort", session=key)
    shown = json.dumps(_gateway_json(key, result, time.monotonic() - started)
                       ) if args.json else None
    if not result["sessionExists"]:
        return _no_such_session(key, shown)
    print(shown if shown is not None else result["text"])
    return OK if result["confirmed"] else PROBLEM


def _gateway_json(key: str, result: Json, waited_s: float) -> dict[str, object]:
    """The gateway's answer in the in-process shape (``_as_json``). The gateway frees runs
    whose process has exited on its own, not for this stop: ``recoveredRuns`` is null."""
    return {
        "session": key,
        "outcome": result["outcome"],
        "runId": result["runId"],
        "status": result["status"],
        "droppedMessages": result["dropped"],
        "recoveredRuns": None,
        "confirmed": result["confirmed"],
        "waitedMs": round(waited_s * 1000),
        "sessionExists": result["sessionExists"],
    }


async def _in_process(settings: Settings, key: str, args: argparse.Namespace) -> int:
    clock = SystemClock()
    async with open_app(settings) as app:
        session = await app.store.get_session(key)
        if session is None:
            return _print(StopReport.nothing(key), [], args)
        # A run whose process has exited is freed first (it ends interrupted, not killed).
        recovered = [r for r in await recover(app.store, this_process(clock.now()))
                     if r.session_id == session.id]
        shown: set[str] = set()

        def progress(run: Run) -> None:
            if run.id not in shown and not args.json:
                shown.add(run.id)
                print(f"waiting for the owner of run {run.id} to stop it...", file=sys.stderr)

        rt = settings.runtime
        report = await stop_and_wait(
            app.store, key, session.id, clock, rt.poll_interval,
            patience=rt.lease.total_seconds() + 5, on_wait=progress,
        )
    return _print(report, recovered, args)


def _print(report: StopReport, recovered: list[Run], args: argparse.Namespace) -> int:
    shown = json.dumps(_as_json(report, recovered)) if args.json else None
    if not report.session_exists:
        return _no_such_session(report.session_key, shown)
    if shown is not None:
        print(shown)
    else:
        for run in recovered:
            print(f"run {run.id} had lost its process; it is marked interrupted")
        print(report.describe())
    return OK if report.confirmed else PROBLEM


def _as_json(report: StopReport, recovered: list[Run]) -> dict[str, object]:
    return {
        "session": report.session_key,
        "outcome": str(report.first.outcome),
        "runId": report.final.id if report.final else None,
        "status": str(report.final.status) if report.final else None,
        "droppedMessages": [m.id for m in report.first.dropped],
        "recoveredRuns": [r.id for r in recovered],
        "confirmed": report.confirmed,
        "waitedMs": round(report.waited_s * 1000),
        "sessionExists": report.session_exists,
    }


def _no_such_session(key: str, shown: str | None) -> int:
    """A stop for a key with no session: most likely a typo, so say so and fail."""
    if shown is not None:
        print(shown)
    print(f"clawgate: there is no session {key!r} (`clawgate sessions list` shows them); "
          "nothing was stopped", file=sys.stderr)
    return USAGE
