"""Reading what is typed at an interactive terminal: line editing, history and pastes.

``readline`` (imported here only, and only for a terminal, so ``clawgate --help`` stays
light) takes the terminal out of its canonical mode, so a line is as long as it is (the
kernel caps a canonical line at 4,095 bytes), the arrows and the usual keys edit it, and Up
recalls earlier messages. A paste is one message: readline's bracketed paste takes the
pasted newlines into the line. A line ending in ``\\`` goes on on the next line, for typing a
message of several lines by hand.

The chat shows no prompt of its own (every prompt shown is given to readline), so
readline's redisplay redraws only what is typed, never text printed around it.

Messages are remembered in ``chat_history`` in the clawgate home, one JSON string a line,
private to you (mode 0600: it holds what you typed). Everything here runs on the chat's
input thread, which readline blocks, so the event loop never waits on the terminal or the
file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

CONTINUE = "\\"  # a line ending so goes on on the next line
CONTINUE_PROMPT = "... "
HISTORY_KEPT = 1000  # messages recalled across chats
PASTE_MODE_OFF = "\x1b[?2004l"  # what readline writes when it hands the terminal back


class LineEditor:
    """readline on a terminal, made and read on the input thread (``close``: on any)."""

    def __init__(self, readline: ModuleType, stdin: TextIO, stdout: TextIO,
                 history: Path | None) -> None:
        self._readline = readline
        self._stdin = stdin
        self._stdout = stdout
        self._history = history
        self._tty_mode = _tty_mode(stdin)
        readline.set_auto_history(False)  # a message of several lines is one entry
        if "libedit" not in (readline.__doc__ or ""):
            readline.parse_and_bind("set enable-bracketed-paste on")  # a paste: one line
        self._load_history()

    def read_message(self) -> str:
        """The next message typed (EOFError at the end); a line ending in ``\\`` goes on."""
        lines: list[str] = []
        prompt = ""
        while True:
            try:
                line = input(prompt)
            except EOFError:
                if not lines:
                    raise
                line = ""  # Ctrl-D after a continued line: the message so far is sent
            if not line.endswith(CONTINUE):
                break
            lines.append(line.removesuffix(CONTINUE))
            prompt = CONTINUE_PROMPT
        message = "\n".join([*lines, line]).rstrip("\n")
        self._remember(message)
        return message

    def close(self) -> None:
        """Give the terminal back as it was, even if readline is still reading a line (the
        chat is leaving while the input thread waits)."""
        if self._tty_mode is None:
            return
        import termios

        with contextlib.suppress(OSError, ValueError):
            self._stdout.write(PASTE_MODE_OFF)
            self._stdout.flush()
            termios.tcsetattr(self._stdin.fileno(), termios.TCSADRAIN, self._tty_mode)

    def _remember(self, message: str) -> None:
        if not message.strip():
            return
        count = self._readline.get_current_history_length()
        if count and self._readline.get_history_item(count) == message:
            return
        self._readline.add_history(message)
        if self._history is not None:
            with contextlib.suppress(OSError):
                _append(self._history, [message])

    def _load_history(self) -> None:
        if self._history is None:
            return
        try:
            entries = _read(self._history)
            if len(entries) > 2 * HISTORY_KEPT:  # kept short: rewritten now and then
                entries = entries[-HISTORY_KEPT:]
                _write(self._history, entries)
        except OSError:
            return
        for entry in entries[-HISTORY_KEPT:]:
            self._readline.add_history(entry)


def open_line_editor(stdin: TextIO, stdout: TextIO, history: Path | None
                     ) -> LineEditor | None:
    """A line editor when both ends are a terminal and readline is there; None otherwise
    (lines are then read as they come, one message a line)."""
    if not (stdin.isatty() and stdout.isatty()) or stdin is not sys.stdin:
        return None  # (input() uses readline only on the process's own terminal)
    try:
        import readline
    except ImportError:  # (not on every platform)
        return None
    return LineEditor(readline, stdin, stdout, history)


def _tty_mode(stdin: TextIO) -> list[Any] | None:
    import termios

    try:
        return termios.tcgetattr(stdin.fileno())
    except (termios.error, OSError, ValueError):
        return None


def _read(path: Path) -> list[str]:
    entries: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return entries
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, str):
                entries.append(entry)
    return entries


def _append(path: Path, entries: list[str], flags: int = os.O_APPEND) -> None:
    """Add entries to the history file, which only you can read (whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)  # (one made by hand, or by an older clawgate)
        file.writelines(json.dumps(entry) + "\n" for entry in entries)


def _write(path: Path, entries: list[str]) -> None:
    _append(path, entries, flags=os.O_TRUNC)
