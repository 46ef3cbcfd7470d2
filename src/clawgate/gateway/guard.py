"""What every request passes before the app sees it, cheapest check first.

1. **Web sites other than the gateway's own page are refused** (403): a request whose
   ``Origin`` is not the address it was sent to. Browsers send ``Origin`` with every
   WebSocket handshake and every cross-site POST, so a page on another site cannot drive the
   gateway through the user's browser, even with ``auth = "none"``.
2. **On loopback, only loopback names are served** (403 for any other ``Host``): a DNS name
   that an attacker points at 127.0.0.1 (DNS rebinding) does not reach the gateway.
3. **The token**, for the API routes (401), before the body is read or parsed; WebSocket
   handshakes are checked by the ``/ws`` route, which also accepts the token as a query
   parameter. Under ``/v1`` the refusal is OpenAI's (``invalid_api_key``).
4. **Request bodies over the limit** are refused (413): unread when their declared length
   is over it; otherwise (a chunked upload) the bytes are counted as the app reads them, and
   the app's answer to a body cut off at the limit is replaced by the 413.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clawgate.gateway import auth
from clawgate.gateway.openai_models import OpenAIError
from clawgate.gateway.settings import GatewaySettings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
#: Paths served without the token: health checks, the web page and its icon, and the API's
#: description.
PUBLIC = ("/healthz", "/readyz", "/static/", "/favicon.ico", "/openapi.json")


class Guard:
    def __init__(self, app: ASGIApp, token: str | None, listen: GatewaySettings) -> None:
        self.app = app
        self.token = token
        self.loopback = listen.loopback
        own = f"[{listen.host}]" if ":" in listen.host else listen.host
        self.local_names = LOOPBACK_NAMES | {own.lower()}
        self.body_limit = listen.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["type"] == "http":
            await self._counted(scope, receive, send)
        elif refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # the handshake gets 403
        else:
            await _refuse(refusal, scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, on a body that may not grow past the limit as it arrives."""
        body = _Body(receive, send, self.body_limit)
        try:
            await self.app(scope, body.receive, body.send)
        except BodyTooLarge:
            if not body.replacing:  # the app had begun its answer: nothing to replace
                raise
        if body.replacing:
            await _refuse(self._too_large(), scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> OpenAIError | None:
        host = headers.get("host", "")
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, host):
            return _forbidden(f"requests from other web sites are refused (Origin "
                              f"{origin[:100]}); use the gateway's own page")
        if self.loopback and hostname(host) not in self.local_names:
            return _forbidden(f"this gateway listens on loopback and answers only to "
                              f"localhost or 127.0.0.1, not {host[:100]!r}")
        if scope["type"] == "websocket":
            return None
        path: str = scope["path"]
        if path != "/" and not path.startswith(PUBLIC) and not auth.valid(
                self.token, auth.presented(headers.get("authorization"), None)):
            return _unauthorized(path)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.body_limit:
            return self._too_large()
        return None

    def _too_large(self) -> OpenAIError:
        return OpenAIError(413, f"request bodies are limited to {self.body_limit} bytes",
                           "invalid_request_error", "request_too_large")


class BodyTooLarge(Exception):
    """Raised to the app that reads a body past the limit (it is answered 413)."""


@dataclass(slots=True)
class _Body:
    """A request's ``receive`` that counts the body's bytes, and its ``send``, which drops
    the app's answer once the body went over the limit (the guard answers 413 instead)."""

    _receive: Receive
    _send: Send
    limit: int
    received: int = 0
    started: bool = False  # the app began its answer
    over: bool = False
    replacing: bool = False  # went over before the app began its answer

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.over, self.replacing = True, not self.started
                raise BodyTooLarge(f"the body is over {self.limit} bytes")
        return message

    async def send(self, message: Message) -> None:
        if self.over and self.replacing:
            return
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def _refuse(problem: OpenAIError, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem.response()
    if problem.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    await response(scope, receive, send)


def _forbidden(message: str) -> OpenAIError:
    return OpenAIError(403, message, "forbidden", "forbidden")


def _unauthorized(path: str) -> OpenAIError:
    """401: under ``/v1`` as OpenAI refuses a key (its SDKs raise AuthenticationError)."""
    message = "a valid gateway token is required (see `clawgate gateway token`)"
    if path == "/v1" or path.startswith("/v1/"):
        return OpenAIError(401, message, "invalid_request_error", "invalid_api_key")
    return OpenAIError(401, message, "unauthorized", "unauthorized")


def hostname(host: str) -> str:
    """The name part of a Host header (``[::1]:8080`` -> ``[::1]``, ``a:1`` -> ``a``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()
    return host.rpartition(":")[0].lower() if ":" in host else host.lower()


def same_origin(origin: str, host: str) -> bool:
    """An ``Origin`` header names the address the request was sent to (scheme aside)."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
