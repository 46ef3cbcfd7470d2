"""The terminal channel: ``clawgate chat``.

Lines typed are messages (or /commands); replies stream as they arrive. Lines piped in are
taken one at a time: each waits until the one before has its answer shown, so every line
gets its own answer, in order, and a command applies after what came before it. Ctrl-C stops
the current reply, not the program; Ctrl-D or /quit leaves once every message sent has its
answer. When the gateway begins to shut down the chat says so, shows the replies in progress
as they end, and sends no message typed from then on (stop, /status, /help, and /queue
and /model without arguments still go through); once the gateway is gone (or if it goes
away unannounced) the chat ends at once and says so, rather than take lines it could not
send. SIGTERM, the terminal closing (SIGHUP) or
the output going away (a closed pipe) end the chat at once. Input is read on a thread so a
slow typist never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from clawgate.channels.chat_output import ChatOutput, silence
from clawgate.channels.line_editor import LineEditor, open_line_editor
from clawgate.domain import DropReason, Fate, preview
from clawgate.errors import ClawgateError, Disconnected, InvalidInput
from clawgate.runtime import commands
from clawgate.runtime.bus import MessageDecided, ReplyDelta, RunChanged
from clawgate.runtime.follow import SessionFollower
from clawgate.runtime.runtime import CommandReply, Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "terminal"
QUIT = frozenset({"/quit", "/exit"})
DOUBLE_PRESS_S = 2.0
WAIT_NOTICE_AFTER_S = 0.5  # leaving waits for the answers; longer than this, it says so
#: Piped input: once a message has its outcome, how long its run's end may take to be shown
#: before the next line is read anyway (the end is an event of its own, which may come a
#: moment after the outcome is known).
SHOWN_WITHIN_S = 5.0
STOP_CONFIRMED_WITHIN_S = 1.0  # leaving waits this long for a stop under way to be done
WAITING = "waiting for the reply to finish; Ctrl-C stops it"
DROPPED_PREVIEW = 40  # characters of a dropped message the chat shows, to say which
COMPACTING = "compacting; Ctrl-C stops it"
#: Commands of the terminal itself, added to the /help list.
TERMINAL_HELP = (
    "/quit, /exit           leave once what you sent is answered (or Ctrl-D; Ctrl-C twice:"
    " at once)")


@dataclass(frozen=True, slots=True)
class Delta:
    run_id: str
    text: str


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: str
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str
    text: str = ""  # (the start of) the message dropped; "" when not known

    @classmethod
    def stored(cls, detail: Mapping[str, object]) -> Dropped:
        """A ``message.dropped`` event's detail (as stored, or as the gateway sends it)."""
        reason, text = detail.get("reason"), detail.get("preview")
        return cls(dropped_because(str(reason) if reason else None), str(text or ""))


@dataclass(frozen=True, slots=True)
class Closing:
    """The backend is shutting down: replies in progress may finish for ``grace`` seconds,
    and nothing more can be sent."""

    grace: float


ChatEvent = Delta | RunEnded | Dropped | Closing


def dropped_because(reason: str | None) -> str:
    """A drop reason as stored (``DropReason``'s value), in words."""
    return DropReason(reason).describe if reason else "dropped"


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    queued_mode: str | None = None  # set when it waits behind a reply in progress


class ChatBackend(Protocol):
    """Where a chat's session lives: this process's runtime, or a running gateway."""

    async def model(self) -> str: ...

    async def handle(self, text: str) -> str | Sent:
        """A command's reply text, or the message as sent."""
        ...

    def events(self) -> AsyncIterator[ChatEvent]:
        """Until ``close``; Disconnected when the backend goes away first."""
        ...

    async def running(self) -> bool:
        """Whether the session has a reply in progress (or one waiting to start)."""
        ...

    async def stop(self) -> str | None:
        """Stop the reply in progress; what to say about it (None: its end says enough)."""
        ...

    async def wait_for(self, message_id: str) -> str | None:
        """Until the message has its answer (Disconnected if the backend goes away); the run
        that answered it (None: it was dropped)."""
        ...

    def close(self) -> None: ...


class LocalChat:
    """A chat on this process's runtime.

    It tells every run of its session, whichever process answers it (another chat on the
    same session may take the message typed here), and every message dropped, however
    (a ``clawgate stop`` in another terminal): see ``SessionFollower``.
    """

    def __init__(self, runtime: Runtime, key: str) -> None:
        self._runtime = runtime
        self._key = key
        self._events = SessionFollower(runtime.store, runtime.bus, runtime.owner.id, key,
                                       runtime.settings.poll_interval)

    async def model(self) -> str:
        session = await self._runtime.store.get_session(self._key)
        return str((session.model if session else None) or self._runtime.settings.default_model)

    async def handle(self, text: str) -> str | Sent:
        result = await self._runtime.handle(self._key, text, channel=CHANNEL)
        if isinstance(result, CommandReply):
            return result.text
        queued = None
        if result.message.fate is Fate.PENDING and result.active_run is not None:
            queued = str(result.queue_mode(self._runtime.settings.queue))
        return Sent(result.message.id, queued)

    async def events(self) -> AsyncIterator[ChatEvent]:
        async for event in self._events:
            if isinstance(event, ReplyDelta):
                yield Delta(event.run_id, event.text)
            elif isinstance(event, RunChanged) and event.run.status.terminal:
                yield RunEnded(event.run.id, str(event.run.status), event.run.error)
            elif isinstance(event, MessageDecided) and event.message.fate is Fate.DROPPED:
                yield Dropped(event.message.why_dropped, event.message.text)

    async def running(self) -> bool:
        session = await self._runtime.store.get_session(self._key)
        runs = await self._runtime.store.list_runs(session.id, 1) if session else []
        return bool(runs) and not runs[-1].status.terminal

    async def stop(self) -> str | None:
        report = await self._runtime.stop(self._key)
        # A run's end, and a stopped /compact's answer, say what was stopped.
        said = report.final is not None or report.compaction_stopped
        return None if said and not report.first.dropped else report.describe()

    async def wait_for(self, message_id: str) -> str | None:
        outcome = await self._runtime.wait_for(message_id)
        return outcome.run.id if outcome.run is not None else None

    def close(self) -> None:
        self._events.close()


class TerminalChat:
    def __init__(
        self, backend: ChatBackend, key: str, stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout, history: Path | None = None,
        on_end_shown: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self._on_end_shown = on_end_shown  # (called each time a run's end is shown)
        self._key = key
        self._in = stdin
        self._interactive = stdin.isatty()
        self._history = history
        self._editor: LineEditor | None = None
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._sent: list[str] = []
        self._streaming: str | None = None  # the run whose reply is being printed
        self._last_interrupt = 0.0
        self._leave = asyncio.Event()
        self._out = ChatOutput(stdout, on_lost=self._leave.set)  # (gone: the chat ends)
        self._ended_by: signal.Signals | None = None  # SIGTERM or SIGHUP: left at once
        self._stopping: set[asyncio.Task[None]] = set()
        self._lost: Disconnected | None = None  # the backend went away: the chat ends
        self._closing = False  # the backend is shutting down: no more messages are sent
        self._ended: set[str] = set()  # runs whose end has been shown
        self._handling = False  # a line is being sent or a command answered
        self._answered: set[str] = set()  # messages sent known to have their answer
        self._shown_end = asyncio.Event()  # set each time a run's end is shown

    async def run(self) -> int:
        model = await self._backend.model()
        self._say(f"clawgate chat, session {self._key}, model {model}. "
                  "/help for commands, Ctrl-C stops a reply, Ctrl-D leaves.")
        printer = asyncio.create_task(self._print_events())
        self._on_ctrl_c()  # (before readline can have the terminal)
        self._read_in_background(asyncio.get_running_loop())
        try:
            await self._converse()
            await self._finish_answers()
        except Disconnected as exc:  # sending or waiting found it gone: say why, once
            self._lost = self._lost or exc
        finally:
            try:  # the terminal first, whatever fails after
                if self._editor is not None:
                    self._editor.close()
            finally:
                await self._stops_confirmed()
                self._backend.close()
                await printer
                self._end_line()  # (the chat's ending line, if any, starts a line)
        return self._outcome()

    async def _stops_confirmed(self) -> None:
        """Leaving as a stop is under way (Ctrl-C twice): the stop has a moment to be
        confirmed, so the run it ends is shown here, not as earlier by the next chat."""
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=STOP_CONFIRMED_WITHIN_S)
        await _cancelled(*self._stopping)

    def _outcome(self) -> int:
        """The exit status, once the chat has ended; why on stderr, if it did not end as
        asked (Disconnected: the backend or the output went away)."""
        if self._ended_by is not None:
            return _ended_by(self._ended_by)
        if self._out.lost is not None:
            raise Disconnected(f"the chat's output was closed ({self._out.lost}); this chat "
                               "ends") from None
        if self._lost is not None:
            raise Disconnected(f"{self._lost}; this chat ends: nothing typed now would be "
                               "sent") from None
        return 0

    async def _converse(self) -> None:
        while not self._leave.is_set():
            line = await self._next_line()
            if line is None or line.strip().lower() in QUIT:
                return
            if line.strip() and self._closing and not _while_closing(line):
                self._say("! not sent: the gateway is shutting down")
            elif line.strip():
                await self._unless_leaving(self._handle(line))  # (a stuck one is left)

    async def _next_line(self) -> str | None:
        return await self._unless_leaving(self._lines.get())

    async def _unless_leaving(self, work: Awaitable[T]) -> T | None:
        """What ``work`` gives, or None if the chat leaves first (``work`` is cancelled)."""
        task = asyncio.ensure_future(work)
        leaving = asyncio.ensure_future(self._leave.wait())
        try:
            await asyncio.wait({task, leaving}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # (also when this wait is itself cancelled: nothing is left running unread)
            await _cancelled(task, leaving)
        return None if task.cancelled() else task.result()

    async def _handle(self, line: str) -> None:
        command = _command(line)
        if isinstance(command, commands.Stop):  # as Ctrl-C: the run's end is shown, and
            await self._stop_quietly()          # what else stop did
            return
        if isinstance(command, commands.Compact):  # a model call: it may take a while
            self._say(f"[{COMPACTING}]")
        try:
            self._handling = True
            result = await self._backend.handle(line)
        except InvalidInput as exc:
            self._say(f"! {exc}")
            return
        except Disconnected:
            raise  # the gateway went away: this chat cannot go on (``run`` says so)
        except ClawgateError as exc:  # a provider, the store or the gateway failed: say so
            self._say(f"! {_doing(line)} failed: {exc}")  # and go on chatting
            return
        finally:
            self._handling = False
        if isinstance(result, str):
            self._say(_with_terminal_help(result) if line.strip().lower() == "/help" else result)
            return
        self._sent.append(result.message_id)
        if result.queued_mode:
            self._say(f"[{_queued(result.queued_mode)}]")
        if not self._interactive:
            await self._answer_shown(result.message_id)

    async def _answer_shown(self, message_id: str) -> None:
        """(Piped input) Until the message has its outcome and its run's end is shown (Ctrl-C
        twice gives up; the backend going away raises Disconnected)."""
        waiting = asyncio.ensure_future(self._backend.wait_for(message_id))
        await self._unless_leaving(waiting)  # (what ended it early, Disconnected, is raised)
        if waiting.cancelled():
            return  # the chat is leaving
        run_id = waiting.result()
        self._answered.add(message_id)  # (leaving need not wait for it again)
        deadline = time.monotonic() + SHOWN_WITHIN_S
        while run_id is not None and run_id not in self._ended and not self._leave.is_set():
            left = deadline - time.monotonic()  # (each round waits for one end shown)
            if left <= 0:
                return
            self._shown_end.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shown_end.wait(), left)

    async def _finish_answers(self) -> None:
        """Before leaving, wait for the answers to what was sent (Ctrl-C gives up; so does
        the backend going away, raising Disconnected). At a terminal, a wait that does not
        end at once is announced, with how to cut it short."""
        told = not self._interactive
        for message_id in self._sent:
            if message_id in self._answered:
                continue
            waiting = asyncio.ensure_future(self._backend.wait_for(message_id))
            leaving = asyncio.ensure_future(self._leave.wait())
            done, pending = await asyncio.wait({waiting, leaving}, timeout=(
                None if told else WAIT_NOTICE_AFTER_S), return_when=asyncio.FIRST_COMPLETED)
            if not done:
                self._say(f"[{WAITING}]")
                told = True
                done, pending = await asyncio.wait({waiting, leaving},
                                                   return_when=asyncio.FIRST_COMPLETED)
            await _cancelled(*pending)
            if waiting in done:
                waiting.result()  # raises what ended the wait early
            if leaving in done:
                return
        await asyncio.sleep(0)  # let the printer show the last events

    async def _print_events(self) -> None:
        try:
            async for event in self._backend.events():
                self._show(event)
        except Disconnected as exc:  # at once: not when the next line is typed
            self._lost = exc
            self._leave.set()
        except Exception as exc:  # showing replies failed: a chat that shows none ends
            log.debug("the chat's printer failed", exc_info=True)
            self._lost = Disconnected(f"showing the replies failed ({type(exc).__name__}: "
                                      f"{exc})")
            self._leave.set()

    def _show(self, event: ChatEvent) -> None:
        if isinstance(event, Delta):
            self._streaming = event.run_id
            self._out.write(event.text)
        elif isinstance(event, RunEnded):
            if self._streaming == event.run_id:
                self._out.write("\n")
                self._streaming = None
            if event.status != "done":
                self._say(f"[{event.status}: {event.error}]")
            self._ended.add(event.run_id)
            self._shown_end.set()
            if self._on_end_shown is not None:
                self._on_end_shown()
        elif isinstance(event, Closing):
            self._closing = True
            self._say(f"[the gateway is shutting down: replies in progress may finish for "
                      f"{event.grace:g}s; stop still works, but no message typed now can "
                      "be sent]")
        else:
            which = f'"{preview(event.text, DROPPED_PREVIEW)}" ' if event.text else ""
            self._say(f"[message {which}dropped: {event.reason}]")

    def _say(self, text: str) -> None:
        self._end_line()
        self._out.write(text + "\n")

    def _end_line(self) -> None:
        """End the line of the reply being printed, if one is."""
        if self._streaming is not None:
            self._out.write("\n")
            self._streaming = None

    def _read_in_background(self, loop: asyncio.AbstractEventLoop) -> None:
        """Lines typed (a message each; the line editor may join several), on a thread,
        until the input ends or says to leave."""

        def read() -> None:
            try:
                next_line = self._line_source(loop)  # (readline: set up here, off the loop)
                while (line := next_line()) is not None:
                    loop.call_soon_threadsafe(self._lines.put_nowait, line)
                    if line.strip().lower() in QUIT:
                        break  # (readline gives the terminal back)
            except (EOFError, OSError, ValueError):
                pass
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(self._lines.put_nowait, None)

        threading.Thread(target=read, name="clawgate terminal input", daemon=True).start()

    def _line_source(self, loop: asyncio.AbstractEventLoop) -> Callable[[], str | None]:
        if self._interactive:
            self._editor = open_line_editor(
                self._in, self._out.stream, self._history,
                lambda typed: _call_soon(loop, lambda: self._typed_ctrl_c(typed)))
            if self._editor is not None:
                return self._editor.read_message
            return lambda: input("")  # (a terminal without readline)

        def piped() -> str | None:  # one line, one message
            line = self._in.readline()
            return line.removesuffix("\n") if line else None

        return piped

    def _on_ctrl_c(self) -> None:
        """Ctrl-C stops the reply (twice: leaves); SIGTERM and SIGHUP (the terminal was
        closed) leave at once."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
            for ending in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(ending, self._end_now, ending)

    def _end_now(self, by: signal.Signals) -> None:
        self._ended_by = by
        if by is signal.SIGHUP:  # (the terminal is gone: nothing more can be shown)
            self._out.lose("the terminal was closed")
            silence(sys.stderr)
        self._leave.set()

    def _typed_ctrl_c(self, typed: bool) -> None:
        """Ctrl-C typed at the line editor, once the editor has thrown the message being
        typed away and ended its line on screen: as the signal, unless it only threw away
        what was typed (nothing is running): then that is all it does, as in a shell."""
        showing = self._streaming is not None
        self._streaming = None  # (a reply being shown goes on on a line of its own)
        if not typed or showing:
            self._interrupt()
            return
        task = asyncio.ensure_future(self._unless_idle())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _unless_idle(self) -> None:
        """As Ctrl-C, if a reply or a command is under way (a failure to tell: it may be)."""
        try:
            busy = self._handling or await self._backend.running()
        except ClawgateError:
            busy = True
        if busy:
            self._interrupt()

    def _interrupt(self) -> None:
        now = time.monotonic()
        twice = now - self._last_interrupt < DOUBLE_PRESS_S
        self._last_interrupt = now
        if twice:
            self._say("[leaving]")
            self._leave.set()
            return
        task = asyncio.ensure_future(self._stop_quietly())  # (first: saying so may fail)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        self._say("[stopping; press Ctrl-C again to leave]")

    async def _stop_quietly(self) -> None:
        try:
            said = await self._backend.stop()
        except ClawgateError as exc:
            self._say(f"[{exc}]")
            return
        if said:  # otherwise the run's own end is shown anyway
            self._say(f"[{said}]")


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Have the loop run ``callback`` (from another thread; not if it is already closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _ended_by(signum: signal.Signals) -> int:
    """The exit status of a chat a signal ended (as a shell reports one it killed), said on
    stderr (but for SIGHUP: the terminal is gone)."""
    if signum is not signal.SIGHUP:
        with contextlib.suppress(OSError):
            print(f"clawgate: this chat ends ({signum.name})", file=sys.stderr, flush=True)
    return 128 + signum


async def _cancelled(*tasks: asyncio.Future[Any]) -> None:
    """Cancel the tasks and wait for them to end (nothing left running, nothing unread)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _with_terminal_help(help_text: str) -> str:
    """The /help list with the terminal's own commands, after /help's line."""
    lines = help_text.split("\n")
    at = next((n + 1 for n, line in enumerate(lines) if line.startswith("/help")), len(lines))
    return "\n".join([*lines[:at], TERMINAL_HELP, *lines[at:]])


def _while_closing(line: str) -> bool:
    """Whether a line still goes through while the gateway shuts down: stop (the gateway
    still ends runs), and what only reads: /status, /help, and /queue and /model without
    arguments (with them, they change settings: refused as messages are)."""
    return isinstance(_command(line), commands.Stop | commands.Status | commands.Help
                      | commands.ShowQueue | commands.ShowModel)


def _command(line: str) -> commands.Command | None:
    try:
        return commands.parse(line)
    except InvalidInput:  # (an unknown command: the backend says so)
        return None


def _doing(line: str) -> str:
    """What a typed line asked for, to say what failed: the command, or the message."""
    word = line.split(maxsplit=1)[0] if line.strip() else ""
    return word if word.startswith("/") else "sending the message"


#: What becomes of a message sent during a reply, by queue mode, as the chat says it.
QUEUED = {
    "followup": "queued: answered on its own after the current reply",
    "collect": "queued: answered together with the other waiting messages after the "
               "current reply",
    "steer": "handed to the current reply (at its next model call)",
    "interrupt": "stopping the current reply to answer this",
}


def _queued(mode: str) -> str:
    return QUEUED.get(mode, "queued behind the current reply")
