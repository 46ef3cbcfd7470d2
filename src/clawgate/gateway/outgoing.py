"""Frames on their way to clients: built and encoded once per event, queued per client.

An event followed by many clients is one ``Outgoing``, shared by all of them: its payload is
built once and its JSON made once, when the first of them sends it. Each client has a
bounded ``FrameQueue``; while a client is behind, the next piece of a run's reply joins the
``run.delta`` frame still waiting in its queue, so the client gets the same text in fewer
frames (and falls behind less).
"""

from __future__ import annotations

import json
from typing import Any

from clawgate.bounded import BoundedQueue
from clawgate.domain import StoredEvent
from clawgate.runtime.bus import ReplyDelta
from clawgate.views import event_row

Frame = dict[str, Any]


class Outgoing:
    """One frame for clients; ``text`` is its JSON, made when first asked for."""

    __slots__ = ("_frame", "_text")

    def __init__(self, frame: Frame | None = None) -> None:
        self._frame = frame
        self._text: str | None = None

    @property
    def frame(self) -> Frame:
        if self._frame is None:
            self._frame = self._build()
        return self._frame

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps(self.frame)
        return self._text

    def _build(self) -> Frame:
        raise NotImplementedError  # only a frame given at construction can be left out


class StoredFrame(Outgoing):
    """A stored event (its payload is built only if some client is sent it)."""

    __slots__ = ("event",)

    def __init__(self, event: StoredEvent) -> None:
        super().__init__()
        self.event = event

    def _build(self) -> Frame:
        event = self.event
        return {"type": "event", "event": event.kind, "seq": event.seq,
                "payload": event_row(event)}


class TextFrame(Outgoing):
    """A ``run.delta``: one piece of a run's reply, or several joined while a client was
    behind."""

    __slots__ = ("_delta", "_own", "_pieces")

    def __init__(self, delta: ReplyDelta, pieces: list[str] | None = None) -> None:
        super().__init__()
        self._delta = delta
        self._pieces = pieces if pieces is not None else [delta.text]
        self._own = pieces is not None  # joined for one client: not shared, may grow

    def joined(self, later: TextFrame) -> TextFrame | None:
        """This frame's text followed by ``later``'s, if both are the same run's: a new
        frame for the client (this one may be shared), or this one when it is already the
        client's own. None when they are not the same run's."""
        if later._delta.run_id != self._delta.run_id:
            return None
        if not self._own:
            return TextFrame(self._delta, [*self._pieces, *later._pieces])
        self._pieces.extend(later._pieces)
        self._frame = self._text = None  # not sent yet: it is still waiting in the queue
        return self

    def _build(self) -> Frame:
        delta = self._delta
        return {"type": "event", "event": "run.delta", "seq": None,
                "payload": {"session": delta.session_key, "sessionId": delta.session_id,
                            "runId": delta.run_id, "text": "".join(self._pieces),
                            "offset": delta.offset}}  # where the first piece starts


class FrameQueue(BoundedQueue[Outgoing | None]):
    """One client's frames waiting to be sent, at most ``maxsize``; None ends the stream.

    ``join`` of a ``TextFrame`` joins it to the frame waiting last when that one is the same
    run's text (frames taken by ``get`` are never changed).
    """

    def join(self, item: TextFrame) -> bool:
        """Join ``item`` to the frame waiting last, if it is the same run's text."""
        last = self.waiting_last()
        if last is None or not isinstance(last[0], TextFrame):
            return False
        joined = last[0].joined(item)
        if joined is None:
            return False
        self.replace_last(joined)
        return True
