"""Who this process is, as a run owner, and whether another owner's process is still alive.

The lease is the rule: an owner that stops renewing loses its runs. When the other owner ran
on this very machine (same host, boot and PID namespace) we can also see at once that its
process is gone, and free its sessions without waiting for the lease to run out.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from clawgate.domain import OwnerInfo
from clawgate.ids import new_id


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine() -> str:
    """This boot of this machine, and this PID namespace (PIDs mean nothing outside it)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{boot}|{namespace}"


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), or "" if there is no such process.

    Together with the pid this names one process, even after its pid is reused.
    """
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    # The command name (field 2) may hold spaces; the fields after it are space-separated.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def this_process(started_at: datetime) -> OwnerInfo:
    pid = os.getpid()
    return OwnerInfo(
        id=new_id("own"),
        host=socket.gethostname(),
        pid=pid,
        boot_id=_machine(),
        process_start=process_start(pid),
        started_at=started_at,
    )


def is_running(other: OwnerInfo, me: OwnerInfo) -> bool | None:
    """Whether ``other``'s process still exists; None unless it ran on this machine."""
    if other.host != me.host or other.boot_id != me.boot_id or not other.process_start:
        return None
    return process_start(other.pid) == other.process_start


def is_gone(other: OwnerInfo, me: OwnerInfo) -> bool:
    """True only when ``other`` ran on this machine and its process no longer exists."""
    if other.pid == me.pid:
        return False  # this very process; its lease speaks for it
    return is_running(other, me) is False


def running_here(started_at: datetime) -> Callable[[OwnerInfo], bool | None]:
    """``is_running`` as seen from this process: what the store asks before an upgrade."""
    return partial(is_running, me=this_process(started_at))
