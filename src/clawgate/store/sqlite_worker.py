"""A SQLite connection that lives on its own thread, so the event loop never waits on disk.

Each call hands a function to the thread. ``write`` wraps it in ``BEGIN IMMEDIATE`` ...
``COMMIT`` (rolled back if it raises); ``read`` runs it in a deferred read transaction, so a
multi-statement read sees one snapshot.

Crossing between threads costs far more than the SQLite work itself (tens of microseconds
against a few), and under load each crossing also waits for the GIL. So the thread takes every
call that is waiting when it wakes, runs each in its own transaction, and hands all the
results back to the event loop in one go.

A worker may also watch for commits made by other connections (``watch_every``): between its
calls, and at least that often, it reads ``PRAGMA data_version`` and, when it moved, tells the
event loop (``on_version``). An idle process so learns of other processes' work without its
event loop waking to ask.

The writer also keeps the WAL file small (``tidy_after``). SQLite can only start the WAL
afresh once no reader is still using it, so while readers follow each other without a gap it
grows; and then it stays as big as it got, until the last connection closes. So the writer
caps the size SQLite leaves the file at (``journal_size_limit``), and once its writes have
paused for ``tidy_after`` seconds, if the file is bigger than that, it copies the WAL into the
database and empties it (``wal_checkpoint(TRUNCATE)``). That runs on its own thread between
calls, and never waits for a lock: while a reader still needs the WAL it gives up at once and
tries again later. (Emptying the WAL moves every other connection's ``data_version``, though
nothing was written: so it is done only when the file grew past the limit, not after every
pause.)
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from clawgate.errors import StoreBusy, StoreClosed, StoreCorrupt, StoreError

T = TypeVar("T")
P = ParamSpec("P")

BUSY_TIMEOUT_MS = 10_000
WAL_RETRY_MS = 10
#: The size SQLite cuts the WAL file back to when it starts it afresh.
WAL_SIZE_LIMIT = 16 * 1024 * 1024

_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]
_STOP = None


#: SQLite's primary result codes for a file that is not a database, or a damaged one.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT})
#: ... and for a database another connection holds.
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of ``exc`` (0 if the driver gave none)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` for clawgate; a file that is not a sound database raises StoreCorrupt.

    The first statement reads the header, so a foreign file is refused before anything is
    written to it.
    """
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    try:
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path) from exc
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (kept in the file, so done once per database).

    While several processes open a new file at once, SQLite refuses the switch with "locked"
    at once rather than waiting out the busy timeout; so wait here, as long as that timeout.
    """
    for _ in range(BUSY_TIMEOUT_MS // WAL_RETRY_MS):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if _code(exc) not in _BUSY_CODES:
                raise
        time.sleep(WAL_RETRY_MS / 1000)  # on the connection's own thread, not the loop's
    conn.execute("PRAGMA journal_mode = WAL")


def translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """A driver error as a store error; a damaged or foreign file is named."""
    if _code(exc) in _CORRUPT_CODES:
        return StoreCorrupt(
            f"{path} is not a usable clawgate database ({exc}). "
            "Move it aside to start afresh, or restore a backup")
    if _code(exc) in _BUSY_CODES:
        return StoreBusy(f"the database stayed locked for {BUSY_TIMEOUT_MS / 1000:g}s: {exc}")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreError(str(exc))
    return StoreError(f"{type(exc).__name__}: {exc}")


class ConnectionWorker:
    """One connection, one thread. Calls are served in the order they were made."""

    def __init__(
        self, path: Path, name: str, watch_every: float | None = None,
        on_version: Callable[[int], None] | None = None, tidy_after: float | None = None,
    ) -> None:
        self._path = path
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._watch = (None if watch_every is None or on_version is None
                       else _Watch(watch_every, on_version))
        self._tidy = None if tidy_after is None else _Tidy(tidy_after, _wal_of(path))

    async def open(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=self._name, daemon=True
        )
        self._thread.start()
        await ready

    async def write(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await self._submit(lambda conn: _transaction(
            conn, self._path, "BEGIN IMMEDIATE", lambda: fn(conn, *args, **kwargs)))

    async def read(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await self._submit(lambda conn: _transaction(
            conn, self._path, "BEGIN", lambda: fn(conn, *args, **kwargs)))

    async def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` here: it moves whenever another connection (of
        this process or any other) commits. A watch counts the caller as told."""
        return await self._submit(self._report_version)

    def _report_version(self, conn: sqlite3.Connection) -> int:
        value = _data_version(conn, self._path)
        if self._watch is not None:
            self._watch.told = value
        return value

    async def close(self) -> None:
        """Finish the calls already made, close the connection, end the thread."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    async def _submit(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed or self._thread is None:
            raise StoreClosed()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((job, future))
        # If the caller is cancelled the transaction still runs to its end on the thread;
        # only its result is dropped.
        return await future

    def _serve(self, ready: asyncio.Future[None]) -> None:
        loop = ready.get_loop()
        try:
            conn = connect(self._path)
        except BaseException as exc:
            failed: list[_Result] = [(ready, None, exc)]
            loop.call_soon_threadsafe(_deliver, failed)
            return
        opened: list[_Result] = [(ready, None, None)]
        loop.call_soon_threadsafe(_deliver, opened)
        try:
            while self._serve_batch(conn, loop):
                pass
        finally:
            conn.close()

    def _serve_batch(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> bool:
        """Run every waiting call; False once the worker is told to stop."""
        batch = [self._next_job(conn, loop)]
        while True:
            try:
                batch.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        results: list[_Result] = []
        running = True
        for job in batch:
            if job is None:
                running = False
                continue
            fn, future = job
            if not running:
                results.append((future, None, StoreClosed()))
                continue
            try:
                results.append((future, fn(conn), None))
            except BaseException as exc:
                results.append((future, None, exc))
        if results:
            results[0][0].get_loop().call_soon_threadsafe(_deliver, results)
        if running and self._watch is not None and self._watch.due():
            self._look(conn, loop)  # a busy worker looks as often as an idle one
        if self._tidy is not None:
            self._tidy.served(conn)
        return running

    def _next_job(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> _Job | None:
        """The next call; while none comes, a watching worker looks at the version, and a
        tidy one empties the WAL once its writes have paused."""
        while (wait := self._idle_wait()) is not None:
            try:
                return self._jobs.get(timeout=wait)
            except queue.Empty:
                if self._watch is not None and self._watch.due():
                    self._look(conn, loop)
                if self._tidy is not None and self._tidy.due():
                    self._tidy.tidy(conn)
        return self._jobs.get()

    def _idle_wait(self) -> float | None:
        """How long to wait for a call before there is something to do (None: no end)."""
        waits = [self._watch.wait()] if self._watch is not None else []
        if self._tidy is not None and self._tidy.pending:
            waits.append(self._tidy.wait())
        return min(waits, default=None)

    def _look(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """Tell the event loop the version, if it moved since it was last told."""
        watch = self._watch
        assert watch is not None
        watch.looked()
        try:
            value = _data_version(conn, self._path)
        except StoreError:  # the next look tries again (pollers also look on a timer)
            return
        if value != watch.told:
            watch.told = value
            try:
                loop.call_soon_threadsafe(watch.on_version, value)
            except RuntimeError:  # the loop is closed (the store never was): nobody to tell
                self._watch = None


@dataclass
class _Watch:
    """A worker's watch for other connections' commits (used on the worker's thread)."""

    every: float
    on_version: Callable[[int], None]  # called on the event loop
    told: int | None = None  # the version the event loop was last told
    next_look: float = 0.0

    def wait(self) -> float:
        return max(0.0, self.next_look - time.monotonic())

    def due(self) -> bool:
        return time.monotonic() >= self.next_look

    def looked(self) -> None:
        self.next_look = time.monotonic() + self.every


def _wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


class _Tidy:
    """A writer's upkeep of the WAL file (used on the worker's thread)."""

    def __init__(self, after: float, wal: Path) -> None:
        self.after = after
        self.wal = wal
        self.written = 0  # the connection's total_changes when the WAL was last emptied
        self.due_at: float | None = None  # when to empty it; None: nothing written since

    @property
    def pending(self) -> bool:
        return self.due_at is not None

    def wait(self) -> float:
        return 0.0 if self.due_at is None else max(0.0, self.due_at - time.monotonic())

    def due(self) -> bool:
        return self.due_at is not None and time.monotonic() >= self.due_at

    def served(self, conn: sqlite3.Connection) -> None:
        """After a batch of calls: if any wrote, empty the WAL once writes have paused."""
        if conn.total_changes != self.written:
            self.due_at = time.monotonic() + self.after

    def tidy(self, conn: sqlite3.Connection) -> None:
        """Empty the WAL if it is too big, or, while another connection needs it, try again
        later."""
        if not _too_big(self.wal) or _empty_wal(conn):
            self.written, self.due_at = conn.total_changes, None
        else:
            self.due_at = time.monotonic() + self.after


def _too_big(wal: Path) -> bool:
    try:
        return wal.stat().st_size > WAL_SIZE_LIMIT
    except OSError:  # no WAL file (yet)
        return False


def _empty_wal(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it, without waiting for any lock.

    False when another connection still reads from the WAL or is writing (SQLite then copies
    what it can and leaves the file as it is), or the attempt failed.
    """
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error:  # e.g. the disk is full: the WAL stays, and the next try may work
        return False
    return not busy


def _data_version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc


def _deliver(results: list[_Result]) -> None:
    for future, value, error in results:
        if future.done():  # the caller was cancelled meanwhile
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


def _transaction(
    conn: sqlite3.Connection, path: Path, begin: str, body: Callable[[], T]
) -> T:
    try:
        conn.execute(begin)
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first error says more
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, path) from exc
        raise
    return result
