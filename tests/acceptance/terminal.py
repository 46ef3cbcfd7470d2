"""A command in a real pseudo-terminal, typed at as a person would (keys, pastes, Ctrl-C,
Ctrl-D).

The terminal is the command's controlling terminal, as a terminal window's is, so Ctrl-C
typed sends SIGINT and closing the window (``hang_up``) sends SIGHUP. The test keeps the
terminal's other end open, so it can see the terminal's mode (whether readline has it, and
that it is given back) after the command has gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time

UP, LEFT = "\x1b[A", "\x1b[D"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
CTRL_C, CTRL_D = "\x03", "\x04"
PASTE_MODE_ON = b"\x1b[?2004h"
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\x08")


class Terminal:
    def __init__(self, args: list[str], env: dict[str, str], columns: int = 80) -> None:
        self._master, self._slave = os.openpty()
        fcntl.ioctl(self._slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.process = subprocess.Popen(args, stdin=self._slave, stdout=self._slave,
                                        stderr=self._slave, env=env, start_new_session=True,
                                        preexec_fn=_control_the_terminal)
        self._raw = b""
        self._hung_up = False

    @property
    def text(self) -> str:
        """Everything shown so far, without the terminal's control sequences."""
        return _ESCAPES.sub("", self._raw.decode("utf-8", "replace"))

    @property
    def brackets_pastes(self) -> bool:
        """Whether the command has asked the terminal to mark pastes (only then does a
        terminal send a paste between PASTE_START and PASTE_END)."""
        return PASTE_MODE_ON in self._raw

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def hang_up(self) -> None:
        """Close the terminal, as closing its window does (the command gets SIGHUP)."""
        self._hung_up = True
        os.close(self._master)

    def wait_for(self, text: str, times: int = 1, within: float = 15) -> str:
        """Read until ``text`` has been shown (``times`` times; bounded); what was shown."""
        deadline = time.monotonic() + within
        while self.text.count(text) < times:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not shown within {within}s; shown:\n"
                                     f"{self.text[-3000:]}")
            self._read(min(left, 0.2))
        return self.text

    def wait_until_editing(self, within: float = 15) -> None:
        """Until the command reads a line with the terminal in raw mode (readline has it)."""
        deadline = time.monotonic() + within
        while self.canonical():
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal stayed canonical; shown:\n{self.text}")
            self._read(0.05)

    def canonical(self) -> bool:
        """Whether the terminal is in its ordinary line-at-a-time mode, echoing."""
        lflag = termios.tcgetattr(self._slave)[3]
        return bool(lflag & termios.ICANON and lflag & termios.ECHO)

    def wait_exit(self, within: float = 20) -> int:
        deadline = time.monotonic() + within
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {within}s; shown:\n{self.text}")
            self._read(0.05)
        self._read(0.05)
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if not self._hung_up:
            os.close(self._master)
        os.close(self._slave)

    def _read(self, within: float) -> None:
        if self._hung_up:
            time.sleep(within)
            return
        ready, _, _ = select.select([self._master], [], [], within)
        if ready:
            with contextlib.suppress(OSError):  # (nothing more to read)
                self._raw += os.read(self._master, 65536)


def _control_the_terminal() -> None:
    """In the child, a session leader: make its terminal (stdin) its controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
