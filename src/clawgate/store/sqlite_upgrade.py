"""What happens before an older database is upgraded: nobody may still be using it, and a copy
of it is kept.

An older clawgate cannot use a database a newer one has upgraded, so the upgrade waits until
every process of the older one has stopped. Both steps run on the writer's thread inside the
``BEGIN IMMEDIATE`` that applies the migrations: no other process can write meanwhile, and when
several start at once only the one that upgrades checks and copies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from clawgate.domain import OwnerInfo
from clawgate.errors import SchemaUpgradeBlocked, StoreError
from clawgate.store.sqlite_files import create_private
from clawgate.store.sqlite_rows import OWNER_COLUMNS, dt, owner_from

log = logging.getLogger(__name__)

#: Whether an owner's process is still running: True or False when this machine can tell,
#: None when it cannot (the owner ran on another machine or in another PID namespace).
ProcessProbe = Callable[[OwnerInfo], bool | None]

#: An owner that renewed its heartbeat this recently is taken to be running, unless its
#: process is known to be gone. Owners renew every lease/3 (5 s by default), so a live one
#: misses a dozen renewals before it stops counting, while one that crashed on another
#: machine blocks an upgrade for at most a minute. Owners on this machine are told apart by
#: their process (see ``ProcessProbe``), whatever their lease.
LIVE_WITHIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class UpgradeGuard:
    """Called (as ``migrate``'s ``before_upgrade``) with the writer's connection, holding the
    write lock, the schema found and the schema it is about to be upgraded to."""

    path: Path
    now: datetime
    running: ProcessProbe | None = None

    def __call__(self, conn: sqlite3.Connection, version: int, target: int) -> None:
        holders = live_owners(conn, self.now, self.running)
        if holders:
            raise SchemaUpgradeBlocked(_blocked(version, target, holders, self.now))
        backup = back_up(self.path, version)
        log.warning("upgrading the database from schema %d to %d; the schema %d database "
                    "is kept as %s", version, target, version, backup)


def live_owners(
    conn: sqlite3.Connection, now: datetime, running: ProcessProbe | None
) -> list[tuple[OwnerInfo, datetime]]:
    """The owners still using the database, each with its last heartbeat."""
    rows = conn.execute(f"SELECT {OWNER_COLUMNS}, heartbeat_at FROM owners ORDER BY id")
    found = [(owner_from(row[:-1]), dt(row[-1])) for row in rows]
    return [(owner, beat) for owner, beat in found if _alive(owner, beat, now, running)]


def _alive(
    owner: OwnerInfo, heartbeat: datetime, now: datetime, running: ProcessProbe | None
) -> bool:
    seen = None if running is None else running(owner)
    return seen if seen is not None else heartbeat >= now - LIVE_WITHIN


def _blocked(
    version: int, target: int, holders: list[tuple[OwnerInfo, datetime]], now: datetime
) -> str:
    who = ", ".join(
        f"pid {owner.pid} on {owner.host} (last seen {max(0, round((now - beat).total_seconds()))}"
        " s ago)" for owner, beat in holders)
    return (f"the database is at schema {version} and an older clawgate is still using it: "
            f"{who}. Stop it, then run clawgate again to upgrade the database to schema "
            f"{target}; nothing was changed")


def backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.bak-v{version}")


def back_up(path: Path, version: int) -> Path:
    """Copy the database, as committed, to ``<name>.bak-v<version>`` (replacing an older copy).

    The copy is read through a connection of its own: the caller's holds the write lock, so
    the committed state cannot change meanwhile, and in WAL mode reading needs no lock. It
    is written under a temporary name and renamed, so a copy is whole or absent.
    """
    final = backup_path(path, version)
    partial = final.with_name(final.name + ".partial")
    leftovers = (partial, partial.with_name(partial.name + "-journal"))
    try:
        for leftover in leftovers:  # from a copy cut short by a crash
            leftover.unlink(missing_ok=True)
        create_private(partial)
        _copy(path, partial)
        os.replace(partial, final)
    except (OSError, sqlite3.Error) as exc:
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        raise StoreError(f"could not copy the database to {final} before upgrading it "
                         f"({exc}); nothing was changed") from exc
    return final


def _copy(source_path: Path, target_path: Path) -> None:
    source = sqlite3.connect(source_path, isolation_level=None)
    target = sqlite3.connect(target_path, isolation_level=None)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    finally:
        target.close()
        source.close()
