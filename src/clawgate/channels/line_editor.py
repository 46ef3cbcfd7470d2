"""Reading what is typed at an interactive terminal: line editing, history and pastes.

``readline`` (imported here only, and only for a terminal, so ``clawgate --help`` stays
light) takes the terminal out of its canonical mode, so a line is as long as it is (the
kernel caps a canonical line at 4,095 bytes), the arrows and the usual keys edit it, and Up
recalls earlier messages. A paste is one message: readline's bracketed paste takes the
pasted newlines into the line. A line ending in ``\\`` goes on on the next line, for typing a
message of several lines by hand.

The chat shows no prompt of its own (every prompt shown is given to readline), so
readline's redisplay redraws only what is typed, never text printed around it.

Ctrl-C while a line is being typed throws that message away, as shells do, and then does
what Ctrl-C does in the chat (``on_interrupt``). Readline runs on the input thread and the
chat's SIGINT handler on the event loop, and readline's line may not be read or changed from
another thread (it is edited, and reallocated, with no lock); so while readline reads, Ctrl-C
is a key rather than a signal (the terminal's VINTR is off), bound to keys of readline's own
that end the line with a ``^C`` mark: the line comes back to the input thread, which drops the
message and calls ``on_interrupt`` (saying whether anything had been typed). The screen shows
``abc^C`` and a fresh line, so it tells truthfully what was thrown away. Between lines, and
once the editor is closed, Ctrl-C is the signal it always was.

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
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

CONTINUE = "\\"  # a line ending so goes on on the next line
CONTINUE_PROMPT = "... "
HISTORY_KEPT = 1000  # messages recalled across chats
PASTE_MODE_OFF = "\x1b[?2004l"  # what readline writes when it hands the terminal back
CTRL_C = "\x03"  # the mark Ctrl-C leaves at the end of the line it ends
#: Key sequences no terminal sends, bound to the readline functions Ctrl-C's macro uses, so
#: that it works whatever the user's inputrc binds the usual keys to.
CTRL_C_STEPS = {"\\e[7990~": "end-of-line", "\\e[7991~": "quoted-insert",
                "\\e[7992~": "accept-line"}
CTRL_C_MACRO = '"\\C-c": "\\e[7990~\\e[7991~\\C-c\\e[7992~"'
KEYMAPS = ("vi-command", "vi-insert", "emacs")  # emacs last: the current one unless vi mode


class LineEditor:
    """readline on a terminal, made and read on the input thread (``close``: on any)."""

    def __init__(self, readline: ModuleType, stdin: TextIO, stdout: TextIO,
                 history: Path | None, on_interrupt: Callable[[bool], None] | None = None) -> None:
        self._readline = readline
        self._stdin = stdin
        self._stdout = stdout
        self._history = history
        self._tty_mode = _tty_mode(stdin)
        self._on_interrupt = on_interrupt
        self._closing = threading.Lock()
        self._closed = False
        readline.set_auto_history(False)  # a message of several lines is one entry
        gnu = "libedit" not in (readline.__doc__ or "")
        if gnu:
            readline.parse_and_bind("set enable-bracketed-paste on")  # a paste: one line
        self._ctrl_c_key = gnu and on_interrupt is not None and self._tty_mode is not None
        if self._ctrl_c_key:  # (libedit: Ctrl-C stays a signal only)
            _bind_ctrl_c(readline)
        if hasattr(readline, "set_pre_input_hook"):  # (run once readline has the terminal)
            readline.set_pre_input_hook(self._unless_closed)
        self._load_history()

    def read_message(self) -> str:
        """The next message typed (EOFError at the end); a line ending in ``\\`` goes on."""
        lines: list[str] = []
        prompt = ""
        while True:
            try:
                line = self._input(prompt)
            except EOFError:
                if not lines:
                    raise
                line = ""  # Ctrl-D after a continued line: the message so far is sent
            if CTRL_C in line and self._on_interrupt is not None:  # (Ctrl-C's mark)
                typed = any(part.strip() for part in [*lines, line.replace(CTRL_C, "")])
                lines, prompt = [], ""  # the message being typed is thrown away
                self._on_interrupt(typed)
                continue
            if not line.endswith(CONTINUE):
                break
            lines.append(line.removesuffix(CONTINUE))
            prompt = CONTINUE_PROMPT
        message = "\n".join([*lines, line]).rstrip("\n")
        self._remember(message)
        return message

    def _input(self, prompt: str) -> str:
        if not self._ctrl_c_key:
            return input(prompt)
        with _ctrl_c_as_a_key(self._stdin):
            return input(prompt)

    def close(self) -> None:
        """Give the terminal back as it was, even if readline is still reading a line (the
        chat is leaving while the input thread waits), or begins to read one now."""
        with self._closing:
            self._closed = True
            self._give_back()

    def _unless_closed(self) -> None:
        """Readline has just taken the terminal for a line: if the chat has left meanwhile
        (the input thread began the line as it left), give the terminal back again."""
        with self._closing:
            if self._closed:
                self._give_back()

    def _give_back(self) -> None:
        if self._tty_mode is None:
            return
        import termios

        with contextlib.suppress(OSError, ValueError, termios.error):
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


def open_line_editor(stdin: TextIO, stdout: TextIO, history: Path | None,
                     on_interrupt: Callable[[bool], None] | None = None) -> LineEditor | None:
    """A line editor when both ends are a terminal and readline is there; None otherwise
    (lines are then read as they come, one message a line). ``on_interrupt`` is called (on
    the input thread) when Ctrl-C throws away the message being typed, with whether anything
    had been typed."""
    if not (stdin.isatty() and stdout.isatty()) or stdin is not sys.stdin:
        return None  # (input() uses readline only on the process's own terminal)
    try:
        import readline
    except ImportError:  # (not on every platform)
        return None
    return LineEditor(readline, stdin, stdout, history, on_interrupt)


def _bind_ctrl_c(readline: ModuleType) -> None:
    """Ctrl-C, typed as a key, ends the line with the ``^C`` mark, in every editing mode."""
    for keymap in KEYMAPS:
        readline.parse_and_bind(f"set keymap {keymap}")
        for keys, function in CTRL_C_STEPS.items():
            readline.parse_and_bind(f'"{keys}": {function}')
        readline.parse_and_bind(CTRL_C_MACRO)


@contextlib.contextmanager
def _ctrl_c_as_a_key(stdin: TextIO) -> Iterator[None]:
    """While readline reads a line, Ctrl-C reaches it as a key instead of raising SIGINT
    (only Ctrl-C: the terminal's other signal keys are left as they are)."""
    import termios

    try:
        fd = stdin.fileno()
        mode = termios.tcgetattr(fd)
        keyed = [*mode[:6], list(mode[6])]
        keyed[6][termios.VINTR] = bytes([os.fpathconf(fd, "PC_VDISABLE")])
        termios.tcsetattr(fd, termios.TCSANOW, keyed)
    except (termios.error, OSError, ValueError):
        yield  # (the terminal went away: readline finds out)
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSANOW, mode)


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
