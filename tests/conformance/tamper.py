"""Damage a store's database the way another tool could, past the guards the store keeps.

``audit`` (``clawgate doctor``) exists to find such damage, so the conformance suite makes it:
in a SQLite file with a raw connection (a guard dropped, CHECK constraints ignored, foreign
keys off as in the ``sqlite3`` shell), in a memory database by replacing its records.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime

from clawgate.domain import Fate, Run, RunStatus
from clawgate.ids import new_id
from clawgate.store.sqlite_rows import ts
from tests.stores import StoreBackend


class Tamper:
    def __init__(self, backend: StoreBackend) -> None:
        self._backend = backend
        self._db = backend.memory

    def _sql(self, sql: str, *params: object) -> None:
        raw = sqlite3.connect(self._backend.path, isolation_level=None)
        try:
            raw.execute("PRAGMA ignore_check_constraints = ON")
            raw.execute(sql, params)
        finally:
            raw.close()

    @property
    def _memory(self) -> bool:
        return self._backend.kind == "memory"

    def end_time_on(self, run: Run, at: datetime) -> None:
        """An active run given an end time (the OpenClaw wedge)."""
        if self._memory:
            self._db.runs[run.id] = dataclasses.replace(self._db.runs[run.id], ended_at=at)
        else:
            self._sql("UPDATE runs SET ended_at = ? WHERE id = ?", ts(at), run.id)

    def second_active_run(self, run: Run) -> str:
        """Another queued run in ``run``'s session (its unique index dropped first)."""
        second = dataclasses.replace(run, id=new_id("run"), status=RunStatus.QUEUED,
                                     started_at=None, deadline_at=None)
        if self._memory:
            self._db.runs[second.id] = second
        else:
            self._sql("DROP INDEX runs_one_active")
            self._sql("INSERT INTO runs (id, session_id, status, created_at, owner_id,"
                      " lease_expires_at) VALUES (?, ?, 'queued', ?, ?, ?)", second.id,
                      run.session_id, ts(run.created_at), run.owner_id,
                      ts(run.lease_expires_at))
        return second.id

    def decide_unexplained(self, message_id: str, fate: Fate, at: datetime) -> None:
        """A waiting message given ``fate`` without the run or reason that explains it."""
        if self._memory:
            message = self._db.inbound[message_id]
            self._db.inbound[message_id] = dataclasses.replace(message, fate=fate,
                                                               decided_at=at)
        else:
            self._sql("UPDATE inbound SET fate = ?, decided_at = ? WHERE id = ?", fate.value,
                      ts(at), message_id)

    def archive_keeping_waiting(self, session_id: str, at: datetime) -> None:
        """A session archived by hand: its waiting messages left undecided."""
        if self._memory:
            session = self._db.sessions[session_id]
            self._db.sessions[session_id] = dataclasses.replace(session, archived_at=at)
            del self._db.current[session.key]
        else:
            self._sql("UPDATE sessions SET archived_at = ? WHERE id = ?", ts(at), session_id)

    def forget_run(self, run_id: str) -> None:
        """A finished run deleted (to save space): its messages and transcript stay."""
        if self._memory:
            del self._db.runs[run_id]
        else:
            self._sql("DROP TRIGGER runs_no_delete")
            self._sql("DELETE FROM runs WHERE id = ?", run_id)
