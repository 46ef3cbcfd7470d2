"""An OpenAI-compatible HTTP API, so any OpenAI client can talk to a clawgate agent.

``POST /v1/chat/completions`` (streamed or not), ``GET /v1/models`` and
``GET /v1/models/{model}``. clawgate keeps each
conversation itself, so only the newest user message of a request is new: it becomes a
message of the session named by the ``X-Clawgate-Session`` header, or ``openai:<user>``, or
``openai``. ``Idempotency-Key`` makes a retried request to the same session safe. A streaming
client that disconnects stops its run (how chat UIs stop a reply) if the run answers its
message alone, or drops its message while it waits its turn; a non-streaming one does not:
the reply is still recorded in the session. A message handed to a reply in flight (steer
mode) is answered with what the run wrote after it. A reply that did not end ``done`` is
never passed off as whole: not streamed, it is an error (as one cut short before a word
is); streamed, an ``error`` line follows the text already sent. Either way the error's
``clawgate`` field says which run, how it ended and the text it wrote. An error after
the message was accepted says ``x-should-retry: false``: OpenAI's SDKs would otherwise send
the message again on their own (they retry every 409 and 5xx, without an Idempotency-Key).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from clawgate.domain import (
    REPLY_SEPARATOR,
    Fate,
    InboundMessage,
    ModelRef,
    NewInbound,
    Run,
    RunStatus,
    check_inbound,
    check_key,
)
from clawgate.errors import ClawgateError, InvalidInput, ProviderError
from clawgate.gateway import params
from clawgate.gateway.openai_models import (
    DEFAULT_MODEL,
    GUARDED,
    MODEL_RESPONSES,
    RESPONSES,
    ChatCompletion,
    ChatCompletionRequest,
    ModelEntry,
    ModelList,
    OpenAIError,
    RunEnd,
)
from clawgate.gateway.openai_repeat import check_same, sent_before
from clawgate.ids import new_id
from clawgate.runtime import commands
from clawgate.runtime.bus import MessageDecided, ReplyDelta, RunChanged, Subscription
from clawgate.runtime.runtime import MessageOutcome, Runtime, ShuttingDown


def router(runtime: Runtime, count: Callable[[str], None], serving: Callable[[], bool],
           closed: asyncio.Event) -> APIRouter:
    """The API on ``runtime``; ``count`` is told the channel of each new message, ``serving``
    is false once the gateway is shutting down, and ``closed`` is set once its runtime takes
    no more work (what still waits, waits for the next start)."""
    api = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

    @api.post("/chat/completions", response_model=None, responses=RESPONSES,
              summary="Send the newest user message to a session; answer as Chat Completions")
    async def chat_completions(
        body: ChatCompletionRequest,
        x_clawgate_session: str | None = Header(default=None),
        idempotency_key: str | None = Header(default=None, max_length=256),
        x_stainless_retry_count: str | None = Header(default=None, include_in_schema=False),
    ) -> Any:
        try:
            key, text = _session_key(body, x_clawgate_session), params.new_text(body)
            _check(text, idempotency_key)  # before any change
            command = commands.parse(text)
            if command is not None:
                return await _carry_out(runtime, key, command, body)
            earlier = await sent_before(runtime, key, text, idempotency_key,
                                        x_stainless_retry_count)
            model = await _choose_model(runtime, key, body.model, switch=earlier is None)
            message, new, listening = await _accept(runtime, key, text, idempotency_key,
                                                    earlier, listen=body.stream)
        except OpenAIError as exc:
            return exc.response()
        except ShuttingDown as exc:
            return OpenAIError(503, str(exc), "service_unavailable").response()
        except InvalidInput as exc:
            return OpenAIError(400, str(exc), "invalid_request_error").response()
        if new:
            count("http")
        message_id = message.id
        if listening is None:
            return await _answer(runtime, key, message_id, closed)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        reply = _Reply(message_id, model, include_usage, key)
        return _Streamed(_stream(runtime, listening, reply, serving, closed), listening)

    @api.get("/models", responses=GUARDED, summary="The models a request may name")
    async def models() -> ModelList:
        return ModelList(object="list", data=[_model_entry(n) for n in _model_names(runtime)])

    @api.get("/models/{model:path}", response_model=ModelEntry, responses=MODEL_RESPONSES,
             summary="One of those models")
    async def one_model(model: str) -> Any:
        """Any name a request may name: ``clawgate``, an alias, a configured provider's
        model (listed or not)."""
        try:
            if model != DEFAULT_MODEL:
                _resolved(runtime, model)
        except OpenAIError as exc:
            return exc.response()
        return _model_entry(model)

    return api


def _model_names(runtime: Runtime) -> list[str]:
    names = [DEFAULT_MODEL, *sorted(runtime.router.policy.aliases),
             str(runtime.settings.default_model),
             *(str(m) for m in runtime.router.policy.fallbacks)]
    for name, entry in sorted(runtime.router.providers.items()):
        names += [f"{name}/{model}" for model in entry.models]
    return list(dict.fromkeys(names))


def _model_entry(name: str) -> ModelEntry:
    return ModelEntry(id=name, object="model", created=0, owned_by="clawgate")


def _resolved(runtime: Runtime, model: str) -> ModelRef:
    """A model a request names, or 404 ``model_not_found`` (as OpenAI answers it)."""
    try:
        return runtime.router.resolve(model)
    except InvalidInput as exc:
        raise OpenAIError(404, f"no model {model[:200]!r}: {exc}", "invalid_request_error",
                          "model_not_found", param="model") from None


def _check(text: str, idempotency_key: str | None) -> None:
    """Refuse a message no model should see (400), naming where it came from."""
    for inbound, param in ((NewInbound("http", text), "messages"),
                           (NewInbound("http", text, idempotency_key), "idempotency-key")):
        try:
            check_inbound(inbound)
        except InvalidInput as exc:
            raise OpenAIError(400, str(exc), "invalid_request_error", param=param) from None


def _session_key(body: ChatCompletionRequest, header: str | None) -> str:
    key = header or (f"openai:{body.user}" if body.user else "openai")
    try:
        return check_key(key)
    except InvalidInput as exc:
        raise OpenAIError(400, f"{exc} (from the X-Clawgate-Session header or the user field)",
                          "invalid_request_error", "invalid_session",
                          param=None if header else "user") from None


async def _answer(runtime: Runtime, key: str, message_id: str,
                  closed: asyncio.Event) -> JSONResponse:
    """The reply to an accepted message, or an error that says not to send it again."""
    try:
        outcome = await _settled(runtime, message_id, closed)
    except ClawgateError as exc:
        return OpenAIError(500, str(exc), "server_error", retry=False).response()
    if outcome is None:
        return _kept(key).response()
    problem = _problem(key, outcome)
    return problem.response() if problem is not None else _completion(outcome)


async def _settled(runtime: Runtime, message_id: str,
                   closed: asyncio.Event) -> MessageOutcome | None:
    """The message's outcome; None if the runtime closed (the gateway is stopping) while
    the message still waited: it stays in the store and is answered after the restart."""
    waiting = asyncio.ensure_future(runtime.wait_for(message_id))
    closing = asyncio.ensure_future(closed.wait())
    try:
        done, _ = await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
        waiting.cancel()  # if it has not ended
    try:
        if waiting in done:
            return await _own_part(runtime, waiting.result())
        # the runtime has closed: every run it had has ended, and says how
        return await _own_part(runtime, await runtime.wait_for(message_id, within=0))
    except TimeoutError:
        return None


async def _own_part(runtime: Runtime, outcome: MessageOutcome) -> MessageOutcome:
    """The outcome with the message's own answer: for one handed to a run in flight (steer
    mode), what the run wrote after it was handed over, not the answer to the messages
    before it (the usage stays the whole run's)."""
    if outcome.run is None or outcome.message.fate is not Fate.MERGED:
        return outcome
    reply = await runtime.store.run_reply(outcome.run.id, after_message=outcome.message.id)
    return replace(outcome, reply=reply)


async def _accept(runtime: Runtime, key: str, text: str, idempotency_key: str | None,
                  earlier: InboundMessage | None,
                  listen: bool) -> tuple[InboundMessage, bool, Subscription | None]:
    """Send the message (a request sent again: see to the one it sent before), and say
    whether it is new; with ``listen``, also the session's events from before it was sent
    (a streamed reply misses none), closed again if sending fails. A message dropped on
    arrival (a full queue) has nothing to stream: it is answered as if not streamed (409
    before any stream starts)."""
    listening = runtime.subscribe(key) if listen else None
    try:
        message, new = await _send(runtime, key, text, idempotency_key, earlier)
    except BaseException:
        if listening is not None:
            listening.close()
        raise
    if listening is not None and message.fate is Fate.DROPPED:
        listening.close()
        listening = None
    return message, new, listening


async def _send(runtime: Runtime, key: str, text: str, idempotency_key: str | None,
                earlier: InboundMessage | None) -> tuple[InboundMessage, bool]:
    if earlier is not None:
        runtime.sent_again(earlier)
        return earlier, False
    accepted = await runtime.send(key, text, channel="http", channel_message_id=idempotency_key)
    if accepted.duplicate:  # the same key twice at once
        check_same(accepted.message, text)
    return accepted.message, not accepted.duplicate


class _Streamed(StreamingResponse):
    """A streamed reply that closes its subscription however the response ends, even one
    whose body was never read (the client left before the first chunk)."""

    def __init__(self, chunks: AsyncIterator[str], listening: Subscription) -> None:
        super().__init__(chunks, media_type="text/event-stream")
        self._listening = listening

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._listening.close()


def _kept(key: str) -> OpenAIError:
    return OpenAIError(
        503, f"clawgate is shutting down: your message is kept in session {key!r} and will "
             "be answered there when the gateway runs again (not in this response)",
        "service_unavailable", "shutting_down", retry=False)


def _completion(outcome: MessageOutcome) -> JSONResponse:
    """The whole reply of a run that ended ``done``."""
    run = outcome.run
    model = str(run.model) if run and run.model else DEFAULT_MODEL
    status = str(run.status) if run else str(RunStatus.DONE)
    return _answered(f"chatcmpl-{outcome.message.id}", model, outcome.reply, outcome,
                     {"X-Clawgate-Run-Status": status})


def _answered(chat_id: str, model: str, text: str, outcome: MessageOutcome | None,
              headers: dict[str, str] | None = None) -> JSONResponse:
    answer = ChatCompletion.model_validate({
        "id": chat_id, "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": text}}],
        "usage": _usage(outcome),
        "clawgate": _run_info(outcome.run if outcome else None),
    })
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


async def _carry_out(runtime: Runtime, key: str, command: commands.Command,
                     body: ChatCompletionRequest) -> Response:
    """A chat command (``/new``, ``/status``, ...), carried out as the other chats do: its
    reply is the answer. Nothing goes to the model (but ``/compact``'s summary), nor is the
    session switched to the model the request names (``/model`` does that). A model that
    fails is a 502 the SDKs do not repeat: each attempt would call it again."""
    try:
        said = await runtime.execute(key, command)
    except ProviderError as exc:
        raise OpenAIError(502, str(exc), "provider_error", exc.kind, retry=False) from None
    model = await _choose_model(runtime, key, DEFAULT_MODEL, switch=False)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    reply = _Reply(new_id("cmd"), model, include_usage, key)
    if body.stream:
        return StreamingResponse(_said(reply, said), media_type="text/event-stream")
    return _answered(reply.chunk_id, model, said, None)


async def _said(reply: _Reply, text: str) -> AsyncIterator[str]:
    """A command's reply, streamed as a model's would be."""
    yield reply.chunk({"role": "assistant", "content": ""})
    yield reply.chunk({"content": text})
    for chunk in _closing(reply, None):
        yield chunk


#: How a run that did not end ``done`` is answered: HTTP status and error type.
UNANSWERED = {
    RunStatus.FAILED: (502, "provider_error"),
    RunStatus.TIMEOUT: (504, "provider_error"),
    RunStatus.KILLED: (409, "run_stopped"),
    RunStatus.INTERRUPTED: (503, "run_interrupted"),
}


def _dropped(message: InboundMessage) -> OpenAIError:
    """A message no run took: 409, its code the reason (``stopped``, ``queue_full_newest``)."""
    reason = message.reason
    return OpenAIError(409, f"the message was not answered: {message.why_dropped}",
                       "message_dropped", str(reason) if reason else "dropped", retry=False)


def _cut_short(run: Run, text: str) -> OpenAIError:
    """A run that did not end ``done``: an error, its status by how the run ended, that keeps
    what the run wrote (``clawgate.reply``; it is in the session too)."""
    status, kind = UNANSWERED.get(run.status, (502, "provider_error"))
    said = run.error or f"the run ended {run.status}"
    if text:
        said += (f" (the reply was cut short after {len(text)} characters: they are in "
                 "error.clawgate.reply)")
    return OpenAIError(status, said, kind, str(run.status), retry=False,
                       run=RunEnd.model_validate({**_run_info(run), "reply": text}))


def _run_info(run: Run | None) -> dict[str, Any]:
    """How the run ended, beside OpenAI's fields: a stopped or cut-off reply says so here."""
    if run is None:
        return {"runId": None, "status": None, "error": None}
    return {"runId": run.id, "status": str(run.status), "error": run.error}


def _usage(outcome: MessageOutcome | None) -> dict[str, Any]:
    usage = outcome.run.usage if outcome and outcome.run else None
    inputs, outputs = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
    return {"prompt_tokens": inputs, "completion_tokens": outputs,
            "total_tokens": inputs + outputs,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens if usage else 0}}


async def _choose_model(runtime: Runtime, key: str, asked: str, switch: bool) -> str:
    """The model the session answers with: the one asked for (switching the session to it,
    field-level) or, for ``clawgate`` or without ``switch`` (a request sent again changes
    nothing), the session's own."""
    session = await runtime.store.get_session(key)
    current = (session.model if session else None) or runtime.settings.default_model
    if asked == DEFAULT_MODEL or not switch:
        return str(current)
    chosen = _resolved(runtime, asked)
    if session is None or session.model != chosen:
        await runtime.set_model(key, chosen)
    return str(chosen)


@dataclass(slots=True)
class _Reply:
    """One streamed answer: its chunks name the model (the one that answered, once known)."""

    message_id: str
    model: str
    include_usage: bool
    key: str
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def chunk_id(self) -> str:
        return f"chatcmpl-{self.message_id}"

    def chunk(self, delta: dict[str, Any], finish: str | None = None,
              extra: dict[str, Any] | None = None) -> str:
        usage = {"usage": None} if self.include_usage else {}  # only the last one has it
        return _chunk({"id": self.chunk_id, "object": "chat.completion.chunk",
                       "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                    "logprobs": None}], **usage, **(extra or {})})

    def usage(self, outcome: MessageOutcome | None) -> str:
        return _chunk({"id": self.chunk_id, "object": "chat.completion.chunk",
                       "created": self.created, "model": self.model, "choices": [],
                       "usage": _usage(outcome)})


#: Why a streamed reply ended when its client went away.
CLIENT_LEFT = "stopped: the HTTP client disconnected"


async def _stream(runtime: Runtime, listening: Subscription, reply: _Reply,
                  serving: Callable[[], bool], closed: asyncio.Event) -> AsyncIterator[str]:
    """Chunks as the reply streams; the stored reply fills in anything the bus did not carry.

    A client that goes away before the end stops the run (that is how chat UIs stop a
    reply) unless the run answers other messages too (collected or steered into it: it goes
    on for them), or drops its message if it still waits its turn; when the gateway itself
    is stopping, the shutdown decides how the run ends.
    """
    sent, message_id = "", reply.message_id
    outcome_task = asyncio.create_task(_settled(runtime, message_id, closed))
    run_id: str | None = None
    try:
        yield reply.chunk({"role": "assistant", "content": ""})
        while not outcome_task.done():
            getting = asyncio.ensure_future(listening.get())
            done, _ = await asyncio.wait({getting, outcome_task},
                                         return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                break
            event = getting.result()
            if event is None:  # fell too far behind: the stored reply fills in the rest
                break
            if isinstance(event, MessageDecided) and event.message.id == message_id:
                run_id = event.message.run_id
            elif isinstance(event, ReplyDelta) and event.run_id == run_id:
                piece = _own_piece(event, first=not sent)
                sent += piece
                yield reply.chunk({"content": piece})
            elif isinstance(event, RunChanged) and event.run.id == run_id:
                reply.model = str(event.run.model or reply.model)
                if event.run.status.terminal:
                    break
        for chunk in _ending(reply, await outcome_task, sent):
            yield chunk
    except ClawgateError as exc:
        yield _sse_error(OpenAIError(500, str(exc), "server_error"))
    finally:
        listening.close()
        if not outcome_task.done() and serving():
            runtime.withdraw(reply.key, message_id, CLIENT_LEFT)
        outcome_task.cancel()


def _own_piece(delta: ReplyDelta, first: bool) -> str:
    """The text of a piece of the reply as this message's answer: a steered message's
    answer starts with the run's next model call, without the separator the run's text
    has there (its stored answer has none either)."""
    if first and delta.offset:
        return delta.text.removeprefix(REPLY_SEPARATOR)
    return delta.text


def _ending(reply: _Reply, outcome: MessageOutcome | None, sent: str) -> Iterator[str]:
    """The rest of the reply; an ``error`` line unless it is whole (it was not answered, or
    its run did not end ``done``); then the end, finishing ``length`` after an error."""
    run = outcome.run if outcome else None
    reply.model = str(run.model) if run and run.model else reply.model
    text = outcome.reply if outcome else ""
    rest = text[len(sent):] if text.startswith(sent) else ""
    if rest:
        yield reply.chunk({"content": rest})
    problem = _problem(reply.key, outcome)
    if problem is not None:
        yield _sse_error(problem)
    yield from _closing(reply, outcome, "stop" if problem is None else "length")


def _problem(key: str, outcome: MessageOutcome | None) -> OpenAIError | None:
    """Why the message has no whole answer, if it has none: it is kept for after a restart
    (no outcome), it was dropped, or its run did not end ``done``."""
    if outcome is None:
        return _kept(key)
    if outcome.run is None:
        return _dropped(outcome.message)
    if outcome.run.status is not RunStatus.DONE:
        return _cut_short(outcome.run, outcome.reply)
    return None


def _closing(reply: _Reply, outcome: MessageOutcome | None,
             finish: str = "stop") -> Iterator[str]:
    """The finish (saying how the run ended, if there was one), the usage if asked, the end."""
    yield reply.chunk({}, finish=finish,
                      extra={"clawgate": _run_info(outcome.run if outcome else None)})
    if reply.include_usage:
        yield reply.usage(outcome)
    yield "data: [DONE]\n\n"


def _chunk(chunk: dict[str, Any]) -> str:
    return f"data: {json.dumps(chunk)}\n\n"


def _sse_error(problem: OpenAIError) -> str:
    return f"data: {json.dumps(problem.body())}\n\n"
