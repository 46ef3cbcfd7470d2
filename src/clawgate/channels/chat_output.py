"""Where a chat prints, which may go away under it: the reader of a pipe exits
(``clawgate chat | tee log``, and Ctrl-C ends tee too), or the terminal is closed.

The first write that fails ends the chat (``on_lost``) instead of raising into whatever
printed; nothing more is written, and the output is pointed at /dev/null, so that nothing
left in a buffer fails again as the process exits.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from typing import TextIO


class ChatOutput:
    def __init__(self, stream: TextIO, on_lost: Callable[[], None]) -> None:
        self.stream = stream
        self.lost: str | None = None  # why nothing more can be shown
        self._on_lost = on_lost

    def write(self, text: str) -> None:
        """Show ``text`` at once (nothing, once the output is lost)."""
        if self.lost is not None:
            return
        try:
            self.stream.write(_encodable(text, self.stream))
            self.stream.flush()
        except OSError as exc:  # (a broken pipe; EIO from a terminal that was closed)
            self.lose(exc.strerror or str(exc))

    def lose(self, why: str) -> None:
        """Nothing more can be shown (a write failed, or the terminal was closed)."""
        if self.lost is not None:
            return
        self.lost = why
        silence(self.stream)
        self._on_lost()


def silence(stream: TextIO) -> None:
    """Point ``stream``'s file at /dev/null (a stream with no file is left as it is)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def _encodable(text: str, stream: TextIO) -> str:
    """``text`` as ``stream`` can write it: a character its encoding has no way to write is
    shown as "?" (rather than ending the chat)."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return text
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "replace").decode(encoding)
    except LookupError:
        return text
    return text
