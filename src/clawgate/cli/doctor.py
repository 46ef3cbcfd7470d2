"""``clawgate doctor``: check every promise against the store; ``--fix`` repairs what it can."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from clawgate.cli.common import OK, PROBLEM, open_app
from clawgate.clock import SystemClock
from clawgate.config import Settings
from clawgate.domain import OwnerInfo
from clawgate.errors import ConfigError, StoreCorrupt, StoreError
from clawgate.runtime.owner import is_gone, this_process
from clawgate.runtime.recovery import recover
from clawgate.store.protocol import Finding, Store


async def main(args: argparse.Namespace, settings: Settings) -> int:
    me = this_process(SystemClock().now())
    fixed: list[str] = []
    notes: list[str] = []
    try:
        async with open_app(settings) as app:
            problems = await _examine(app.store, me)
            if args.fix and any(f.fixable for f in problems):
                fixed = [f"run {r.id} marked interrupted ({r.error})"
                         for r in await recover(app.store, me)]
                problems = await _examine(app.store, me)
            notes = await _notes(app.store)
    except StoreError as exc:  # a damaged or foreign file, a newer schema, a held lock
        code = "corrupt_database" if isinstance(exc, StoreCorrupt) else "database"
        problems = [Finding(code, str(exc))]
    _report(args, settings, problems, fixed, notes)
    return OK if not problems else PROBLEM


def on_config_error(args: argparse.Namespace, error: ConfigError) -> int:
    _report(args, None, [Finding("config", str(error))], [], [])
    return PROBLEM


async def _examine(store: Store, me: OwnerInfo) -> list[Finding]:
    findings = await store.audit()
    listed = {f.subject for f in findings if f.code == "orphaned_run"}
    for owner in await store.owners_with_active_runs():
        if is_gone(owner, me):
            for run in await store.active_runs():
                if run.owner_id == owner.id and run.id not in listed:
                    findings.append(Finding(
                        "dead_owner",
                        f"run {run.id} is active but its process (pid {owner.pid}) has exited",
                        fixable=True,
                        subject=run.id,
                    ))
    return findings


async def _notes(store: Store) -> list[str]:
    waiting = await store.claimable_sessions()
    if not waiting:
        return []
    return [f"{len(waiting)} session(s) have messages waiting with no run; they are answered "
            "when clawgate next serves them (chat, agent, or the gateway)"]


def _report(args: argparse.Namespace, settings: Settings | None, problems: list[Finding],
            fixed: list[str], notes: list[str]) -> None:
    if args.json:
        print(json.dumps({
            "healthy": not problems,
            "database": str(settings.database) if settings else None,
            "problems": [asdict(f) for f in problems],
            "fixed": fixed,
            "notes": notes,
        }, indent=2))
        return
    if settings is not None:
        print(f"database  {settings.database}")
    for line in fixed:
        print(f"fixed     {line}")
    for finding in problems:
        hint = " (clawgate doctor --fix repairs this)" if finding.fixable else ""
        print(f"PROBLEM   {finding.code}: {finding.message}{hint}")
    for note in notes:
        print(f"note      {note}")
    print("healthy: every promise holds" if not problems else
          f"{len(problems)} problem(s) found")
