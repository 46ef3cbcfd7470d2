"""A real HTTP server on 127.0.0.1 that speaks the OpenAI and Anthropic wire formats.

Close enough that the official SDKs accept it: Chat Completions (``POST /v1/chat/completions``)
and Messages (``POST /v1/messages``), as JSON or as server-sent events. A test scripts what
the next requests meet::

    server = await FakeModelServer.start()
    server.script(Fail(429, retry_after=2), Reply("hello"))
    server.on_key("sk-bad", Fail(401))          # every request with this key
    ...
    exchange = server.exchanges[-1]
    await exchange.closed_by_client.wait()        # the client hung up (stop, timeout)

Behaviours: ``Reply`` (streamed in chunks, or JSON), ``Fail`` (an HTTP error with the
provider's error body), ``Hang`` (before the first token, or after some chunks),
``Malformed`` (a chunk that is not JSON), ``Reset`` (the connection is torn down) and
``StreamError`` (an error event inside a 200 stream, as Anthropic sends ``overloaded_error``).

Streams open as the providers' do: Anthropic's ``message_start`` already reports the input
tokens (``input_tokens`` of each behaviour); OpenAI reports usage only in its last chunk, and
only when the request asks for it (``stream_options: {"include_usage": true}``).

Usage is counted as each provider counts it. A ``Reply``'s ``input_tokens`` is the whole
input, of which ``cached_tokens`` were read from the provider's cache and
``cache_write_tokens`` written to it. OpenAI's ``prompt_tokens`` is the whole input, with the
cache reads in ``prompt_tokens_details.cached_tokens``; Anthropic's ``input_tokens`` is only
the rest, beside ``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Reply:
    text: str = "ok"
    chunks: tuple[str, ...] | None = None  # how the text is split when streamed
    input_tokens: int = 11  # the whole input, cached or not
    output_tokens: int = 7
    cached_tokens: int = 0  # of the input, read from the provider's cache
    cache_write_tokens: int = 0  # of the input, written to it (Anthropic reports these)
    reports_usage: bool = True  # False: an OpenAI stream without its usage chunk (some servers)

    def __post_init__(self) -> None:
        if self.cached_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("cached and cache-write tokens are part of input_tokens")


@dataclass(frozen=True)
class Fail:
    status: int = 500
    message: str = "internal error"
    retry_after: float | str | None = None  # seconds, or the header's text as sent (a date)
    code: str | None = None  # OpenAI's error code / Anthropic's error type, if not implied
    body: object = None  # the whole JSON body as sent, in place of the API's usual shape


@dataclass(frozen=True)
class Hang:
    after: tuple[str, ...] = ()  # chunks sent before hanging; () hangs before the first token
    input_tokens: int = 11  # reported at the start of an Anthropic stream


@dataclass(frozen=True)
class Malformed:
    after: tuple[str, ...] = ()
    input_tokens: int = 11


@dataclass(frozen=True)
class Reset:
    after: tuple[str, ...] = ()
    input_tokens: int = 11


@dataclass(frozen=True)
class StreamError:
    """An error event in the middle of a streamed answer (the HTTP status was already 200)."""

    type: str = "api_error"  # Anthropic's error type; OpenAI's error type likewise
    message: str = "Internal server error"
    after: tuple[str, ...] = ()
    input_tokens: int = 11


Behaviour = Reply | Fail | Hang | Malformed | Reset | StreamError
StreamBehaviour = Reply | Hang | Malformed | Reset | StreamError


@dataclass
class Exchange:
    """One request as the server saw it, and what became of its connection."""

    api: Api
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    behaviour: Behaviour
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    completed: asyncio.Event = field(default_factory=asyncio.Event)  # the answer was all sent
    started: float = field(default_factory=time.monotonic)

    @property
    def api_key(self) -> str:
        bearer = self.headers.get("authorization", "")
        return self.headers.get("x-api-key") or bearer.removeprefix("Bearer ").strip()

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def streamed(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def wants_usage(self) -> bool:
        """Whether a streamed Chat Completions request asked for usage in its last chunk."""
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def user_texts(self) -> list[str]:
        return [_text_of(m.get("content")) for m in self.body.get("messages", [])
                if m.get("role") == "user"]

    def system_text(self) -> str:
        system = self.body.get("system")
        if system is not None:
            return _text_of(system)
        return "\n".join(_text_of(m.get("content")) for m in self.body.get("messages", [])
                         if m.get("role") == "system")


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class FakeModelServer:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._queue: deque[Behaviour] = deque()
        self._by_key: dict[str, Behaviour] = {}
        self._by_model: dict[str, Behaviour] = {}
        self.default: Behaviour | None = None  # what unscripted requests meet (None: an echo)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.port = 0

    @classmethod
    async def start(cls) -> FakeModelServer:
        server = cls()
        server._server = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        server.port = server._server.sockets[0].getsockname()[1]
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        """What the next requests meet, in order (then the default reply)."""
        self._queue.extend(behaviours)

    def on_key(self, api_key: str, behaviour: Behaviour) -> None:
        """What every request carrying this key meets."""
        self._by_key[api_key] = behaviour

    def on_model(self, model: str, behaviour: Behaviour) -> None:
        """What every request for this model meets."""
        self._by_model[model] = behaviour

    def requests_for(self, model: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.model == model]

    async def close(self) -> None:
        """Stop listening and tear down open connections (their handlers end normally)."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections.values()):
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        await self._server.wait_closed()

    # --- serving ------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw or b"{}")
        api: Api = "anthropic" if path.rstrip("/").endswith("/messages") else "openai"
        exchange = Exchange(api, path, headers, body, self._next(headers, body))
        self.exchanges.append(exchange)
        return await _Responder(exchange, reader, writer).respond()

    def _next(self, headers: dict[str, str], body: dict[str, Any]) -> Behaviour:
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
            "Bearer ").strip()
        if key in self._by_key:
            return self._by_key[key]
        if body.get("model") in self._by_model:
            return self._by_model[str(body.get("model"))]
        if self._queue:
            return self._queue.popleft()
        if self.default is not None:
            return self.default
        return Reply("reply to: " + (_text_of(body.get("messages", [{}])[-1].get("content"))
                                     if body.get("messages") else ""))


class _Responder:
    """Writes one response in the exchange's wire format, as its behaviour says."""

    def __init__(
        self, exchange: Exchange, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.x = exchange
        self.reader = reader
        self.writer = writer

    async def respond(self) -> bool:
        """Answer; return whether the connection can serve another request."""
        behaviour = self.x.behaviour
        if isinstance(behaviour, Fail):
            await self._error(behaviour)
            self.x.completed.set()
            return True
        if isinstance(behaviour, Reply) and not self.x.streamed:
            await self._json(200, _formats[self.x.api].message(behaviour, self.x.model))
            self.x.completed.set()
            return True
        await self._stream(behaviour)
        return isinstance(behaviour, Reply)

    async def _stream(self, behaviour: Reply | Hang | Malformed | Reset | StreamError) -> None:
        fmt = _formats[self.x.api]
        self.writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                          b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        await self._send(fmt.opening(self.x.model, behaviour))
        if isinstance(behaviour, Reply):
            pieces = behaviour.chunks or tuple(_split(behaviour.text))
            for piece in pieces:
                await self._send(fmt.delta(piece, self.x.model))
            await self._send(fmt.closing(behaviour, self.x))
            await self._chunk(b"")
            self.x.completed.set()
            return
        for piece in behaviour.after:
            await self._send(fmt.delta(piece, self.x.model))
        if isinstance(behaviour, Hang):
            await self._wait_for_client_to_leave()
        elif isinstance(behaviour, Malformed):
            await self._send(fmt.malformed())
            await self._wait_for_client_to_leave()
        elif isinstance(behaviour, Reset):
            _reset(self.writer)
        elif isinstance(behaviour, StreamError):
            await self._send(fmt.stream_error(behaviour))
            await self._chunk(b"")
            self.x.completed.set()

    async def _wait_for_client_to_leave(self) -> None:
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(1024):
                pass
        self.x.closed_by_client.set()

    async def _send(self, text: str) -> None:
        if text:
            await self._chunk(text.encode())

    async def _chunk(self, data: bytes) -> None:
        self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        try:
            await self.writer.drain()
        except ConnectionError:
            self.x.closed_by_client.set()
            raise

    async def _error(self, fail: Fail) -> None:
        extra = {} if fail.retry_after is None else {"retry-after": (
            fail.retry_after if isinstance(fail.retry_after, str) else f"{fail.retry_after:g}")}
        body = _formats[self.x.api].error(fail) if fail.body is None else fail.body
        await self._json(fail.status, body, extra)

    async def _json(self, status: int, payload: object, extra: dict[str, str] | None = None
                    ) -> None:
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                "content-type: application/json", f"content-length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await self.writer.drain()


def _split(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
            403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            529: "Overloaded"}


class _OpenAIFormat:
    @staticmethod
    def opening(model: str, behaviour: StreamBehaviour) -> str:
        return _sse(_chunk(model, {"role": "assistant", "content": ""}))

    @staticmethod
    def delta(text: str, model: str) -> str:
        return _sse(_chunk(model, {"content": text}))

    @staticmethod
    def closing(reply: Reply, exchange: Exchange) -> str:
        finish = _sse(_chunk(exchange.model, {}, finish="stop"))
        if exchange.wants_usage and reply.reports_usage:
            finish += _sse({**_chunk(exchange.model, None), "choices": [],
                            "usage": _openai_usage(reply)})
        return finish + "data: [DONE]\n\n"

    @staticmethod
    def malformed() -> str:
        return "data: {this is not json\n\n"

    @staticmethod
    def stream_error(error: StreamError) -> str:
        return _sse({"error": {"message": error.message, "type": error.type, "param": None,
                               "code": None}})

    @staticmethod
    def message(reply: Reply, model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": reply.text}}],
            "usage": _openai_usage(reply),
        }

    @staticmethod
    def error(fail: Fail) -> dict[str, Any]:
        kinds = {400: "invalid_request_error", 401: "invalid_request_error",
                 429: "rate_limit_error"}
        code = fail.code or {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(fail.status)
        return {"error": {"message": fail.message, "type": kinds.get(fail.status, "server_error"),
                          "param": None, "code": code}}


def _chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None
           ) -> dict[str, Any]:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "choices": choices}


def _openai_usage(reply: Reply) -> dict[str, Any]:
    return {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens}}


def _sse(payload: dict[str, Any], event: str | None = None) -> str:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(payload)}\n\n"


class _AnthropicFormat:
    @staticmethod
    def opening(model: str, behaviour: StreamBehaviour) -> str:
        message: dict[str, Any] = {
                   "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {**_anthropic_input(behaviour), "output_tokens": 1}}
        start = {"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}}
        return (_sse({"type": "message_start", "message": message}, "message_start")
                + _sse(start, "content_block_start") + _sse({"type": "ping"}, "ping"))

    @staticmethod
    def delta(text: str, model: str) -> str:
        return _sse({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": text}}, "content_block_delta")

    @staticmethod
    def closing(reply: Reply, exchange: Exchange) -> str:
        usage = {**_anthropic_input(reply), "output_tokens": reply.output_tokens}
        return (_sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
                + _sse({"type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": usage}, "message_delta")
                + _sse({"type": "message_stop"}, "message_stop"))

    @staticmethod
    def malformed() -> str:
        return "event: content_block_delta\ndata: {this is not json\n\n"

    @staticmethod
    def stream_error(error: StreamError) -> str:
        return _sse({"type": "error", "error": {"type": error.type, "message": error.message}},
                    "error")

    @staticmethod
    def message(reply: Reply, model: str) -> dict[str, Any]:
        return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": reply.text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {**_anthropic_input(reply), "output_tokens": reply.output_tokens}}

    @staticmethod
    def error(fail: Fail) -> dict[str, Any]:
        kinds = {400: "invalid_request_error", 401: "authentication_error",
                 402: "billing_error", 403: "permission_error", 429: "rate_limit_error",
                 529: "overloaded_error"}
        return {"type": "error",
                "error": {"type": fail.code or kinds.get(fail.status, "api_error"),
                          "message": fail.message}}


def _anthropic_input(behaviour: StreamBehaviour) -> dict[str, int]:
    """The input as Anthropic counts it: ``input_tokens`` leaves out the cache reads and
    writes, which have fields of their own."""
    read = behaviour.cached_tokens if isinstance(behaviour, Reply) else 0
    written = behaviour.cache_write_tokens if isinstance(behaviour, Reply) else 0
    return {"input_tokens": behaviour.input_tokens - read - written,
            "cache_read_input_tokens": read, "cache_creation_input_tokens": written}


_formats: dict[Api, Any] = {"openai": _OpenAIFormat, "anthropic": _AnthropicFormat}


class ModelServerThread:
    """The fake server on a thread of its own, for tests that block (on a subprocess, say).

        with ModelServerThread() as server:
            server.script(Reply("hi"))
            subprocess.run([...])   # the server keeps answering meanwhile
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake model server", daemon=True)
        self._server: FakeModelServer | None = None

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("the fake model server did not start")
        return self._server

    def __exit__(self, *exc: object) -> None:
        server = self._server
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(FakeModelServer.start())
        self._ready.set()
        self._loop.run_forever()


async def _serve_forever(words: int) -> None:
    server = await FakeModelServer.start()
    reply = " ".join(f"word{n}" for n in range(words))
    server.default = Reply(reply)
    print(server.url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":  # python -m clawgate.testing.model_server [words]: prints its URL
    import sys

    asyncio.run(_serve_forever(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
