"""One WebSocket connection: requests in, responses and events out.

Requests are answered in the order they came (so two ``chat.send`` keep their order), except
``chat.abort``, which is answered alongside, so a stop never waits behind other work, and a
``/compact``, which is started in its turn but answered when it ends, so the requests after
it (switching session, reading, another message) do not wait for a model to summarise. Every
bad frame gets an error response and the connection stays open. When the gateway begins to
shut down, the client is told at once (``gateway.shutdown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from clawgate.errors import ClawgateError, InvalidInput, UnknownSession
from clawgate.gateway.api import GatewayApi
from clawgate.gateway.feed import Listener
from clawgate.gateway.protocol import ErrorCode, ProtocolError, parse_request, request_id_of
from clawgate.runtime import commands
from clawgate.runtime.runtime import ShuttingDown

log = logging.getLogger(__name__)

ALONGSIDE = frozenset({"chat.abort"})
PENDING_REQUESTS = 256
#: Requests answered alongside at once, at most; a ``/compact`` beyond it holds up the
#: requests after it, as any request does.
ALONGSIDE_MOST = 64


class Connection:
    def __init__(self, websocket: WebSocket, api: GatewayApi, max_frame_bytes: int) -> None:
        self._ws = websocket
        self._api = api
        self._max = max_frame_bytes
        self._listener: Listener = api.feed.listener()
        self._send_lock = asyncio.Lock()
        self._inbox: asyncio.Queue[str] = asyncio.Queue(PENDING_REQUESTS)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        workers = [asyncio.create_task(self._pump_events(), name="ws events"),
                   asyncio.create_task(self._answer_in_order(), name="ws requests"),
                   asyncio.create_task(self._announce_shutdown(), name="ws shutdown")]
        try:
            await self._receive()
        finally:
            for task in (*workers, *self._tasks):
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            self._api.feed.remove(self._listener)

    async def _receive(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            if _method_of(text) in ALONGSIDE:
                self._answer_alongside(text)
            elif self._inbox.full():
                await self._send(ProtocolError(ErrorCode.UNAVAILABLE, "too many requests in "
                                               "flight on this connection").frame(
                                                   request_id_of(text)))
            else:
                self._inbox.put_nowait(text)

    async def _answer_in_order(self) -> None:
        while True:
            text = await self._inbox.get()
            if _is_compact(text) and len(self._tasks) < ALONGSIDE_MOST:
                self._answer_alongside(text)  # begun after what came before it
            else:
                await self._answer(text)

    def _answer_alongside(self, text: str) -> None:
        task = asyncio.create_task(self._answer(text), name="ws request alongside")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, text: str) -> None:
        request_id: object = None
        try:
            request = parse_request(text, self._max)
            request_id = request.id
            payload = await self._api.call(request.method, request.params, self._listener)
            frame: dict[str, Any] = {"type": "res", "id": request.id, "ok": True,
                                     "payload": payload}
        except ProtocolError as exc:
            frame = exc.frame(request_id if request_id is not None else request_id_of(text))
        except ClawgateError as exc:
            frame = _error(exc).frame(request_id)
        except Exception:  # the outermost handler of a request: log, answer, carry on
            log.exception("request failed: %.200s", text)
            frame = ProtocolError(ErrorCode.INTERNAL, "internal error").frame(request_id)
        await self._send(frame)

    async def _pump_events(self) -> None:
        while (frame := await self._listener.frames.get()) is not None:
            await self._send_text(frame.text)  # encoded once for every client it goes to

    async def _announce_shutdown(self) -> None:
        await self._send(await self._api.feed.shutdown.frame())

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._send_text(json.dumps(frame))

    async def _send_text(self, text: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, ConnectionError):
            async with self._send_lock:
                await self._ws.send_text(text)


def _error(exc: ClawgateError) -> ProtocolError:
    if isinstance(exc, UnknownSession):
        return ProtocolError(ErrorCode.UNKNOWN_SESSION, str(exc))
    if isinstance(exc, InvalidInput):
        return ProtocolError(ErrorCode.INVALID_PARAMS, str(exc),
                             [{"field": exc.field or "params", "problem": str(exc)}])
    if isinstance(exc, ShuttingDown):
        return ProtocolError(ErrorCode.SHUTTING_DOWN, str(exc))
    return ProtocolError(ErrorCode.UNAVAILABLE, str(exc))


def _method_of(text: str) -> object:
    """The method a frame names, cheaply and without failing (for routing only)."""
    if '"chat.abort"' not in text:
        return None
    frame = _frame_of(text)
    return frame.get("method") if frame else None


def _is_compact(text: str) -> bool:
    """Whether a frame is a ``chat.send`` of ``/compact`` (for routing only: never fails)."""
    if "/compact" not in text.lower():
        return False
    frame = _frame_of(text)
    params = frame.get("params") if frame and frame.get("method") == "chat.send" else None
    said = params.get("text") if isinstance(params, dict) else None
    if not isinstance(said, str):
        return False
    try:
        return isinstance(commands.parse(said), commands.Compact)
    except InvalidInput:
        return False


def _frame_of(text: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None
