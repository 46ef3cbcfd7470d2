"""A client of the gateway's WebSocket protocol (the CLI uses it when a gateway is running).

    async with await GatewayClient.connect(url, token) as client:
        ack = await client.request("chat.send", session="main", text="hi")
        async for event in client.events(): ...

The WebSocket library is imported when a connection is made, so a CLI command that finds no
gateway running never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from clawgate.errors import ClawgateError, Disconnected, InvalidInput

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from clawgate.views import Json

Frame = dict[str, Any]


class GatewayError(ClawgateError):
    """The gateway answered a request with an error, or could not be reached."""

    def __init__(self, code: str, message: str, details: object = None) -> None:
        self.code, self.details = code, details
        super().__init__(message)


class GatewayClosed(GatewayError, Disconnected):
    """The connection to the gateway closed (it stopped, or crashed)."""

    def __init__(self, message: str) -> None:
        super().__init__("closed", message)


class GatewayRefusedInput(GatewayError, InvalidInput):
    """The gateway refused what was asked (bad parameters, no such session); nothing changed."""


REFUSED_INPUT = frozenset({"invalid_params", "unknown_session"})
#: Closing waits this long for the gateway's side of the closing handshake: a gateway that
#: answers does so at once, and one that is stuck must not hold up a command that leaves.
CLOSE_WITHIN_S = 1.0


class GatewayClient:
    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self._waiting: dict[object, asyncio.Future[Frame]] = {}
        self.event_frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        #: Why the connection ended, when it was not this client that closed it.
        self.lost: str | None = None
        self._closing = False
        self._reader = asyncio.create_task(self._read(), name="gateway client reader")

    @classmethod
    async def connect(cls, url: str, token: str | None, open_within: float = 10.0
                      ) -> GatewayClient:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            connection = await connect(ws_url, additional_headers=headers, open_timeout=open_within,
                                       close_timeout=CLOSE_WITHIN_S, max_size=None, proxy=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            code = "unauthorized" if status == 401 else "refused"
            raise GatewayError(code, f"the gateway at {url} refused the connection ({status})"
                               ) from None
        except (OSError, TimeoutError) as exc:
            raise GatewayError("unreachable", f"cannot reach the gateway at {url}: {exc}"
                               ) from None
        return cls(connection)

    async def request(self, method: str, **params: Any) -> Json:
        """Send a request and wait for its response's payload (a GatewayError on error)."""
        return await self.send_raw({"type": "req", "id": next(self._ids), "method": method,
                                    "params": params})

    async def send_raw(self, frame: Frame | str, request_id: object = None) -> Json:
        """Send any frame (tests send broken ones) and wait for the response to its id."""
        from websockets.exceptions import ConnectionClosed  # loaded: connected by now

        text = frame if isinstance(frame, str) else json.dumps(frame)
        key = frame.get("id") if isinstance(frame, dict) else request_id
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            await self._connection.send(text)
            response = await future
        except ConnectionClosed:
            raise GatewayClosed("the connection to the gateway closed") from None
        finally:
            self._waiting.pop(key, None)
            if future.done() and not future.cancelled():
                future.exception()  # the reader may fail it while send raises: it is read here
        if not response.get("ok"):
            error = response.get("error") or {}
            code = str(error.get("code"))
            kind = GatewayRefusedInput if code in REFUSED_INPUT else GatewayError
            raise kind(code, str(error.get("message")), error.get("details"))
        payload = response.get("payload")
        if not isinstance(payload, dict):  # every method answers an object
            raise GatewayError("bad_frame", "the gateway answered without a payload object")
        return payload

    async def events(self) -> AsyncIterator[Frame]:
        while (frame := await self.event_frames.get()) is not None:
            yield frame

    def end_events(self) -> None:
        """Make ``events()`` finish (the connection stays open for requests)."""
        self.event_frames.put_nowait(None)

    async def next_event(self, within: float = 5.0) -> Frame:
        async with asyncio.timeout(within):
            frame = await self.event_frames.get()
        if frame is None:
            raise GatewayClosed("the gateway closed the connection")
        return frame

    async def close(self) -> None:
        self._closing = True
        await self._connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for text in self._connection:
                frame = json.loads(text)
                if frame.get("type") == "res":
                    waiter = self._waiting.get(frame.get("id"))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
                else:
                    self.event_frames.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            if not self._closing:
                self.lost = _why_closed(self._connection)
            self.event_frames.put_nowait(None)
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(GatewayClosed("the connection to the gateway closed"))
            with contextlib.suppress(Exception):
                await self._connection.close()


def _why_closed(connection: ClientConnection) -> str:
    from websockets.frames import CloseCode

    code = connection.close_code
    if code in (None, CloseCode.ABNORMAL_CLOSURE):  # no closing handshake: killed, or the
        return "the connection to the gateway was lost"  # network failed
    if code in (CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART):
        return "the gateway shut down"
    reason = f": {connection.close_reason}" if connection.close_reason else ""
    return f"the gateway closed the connection ({code}{reason})"
