"""The OpenAI-compatible API's shapes: what a request may carry, what comes back.

The request models check input; the response models describe what the routes send, so that
``/openapi.json`` tells the truth (the tests validate real answers against them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

DEFAULT_MODEL = "clawgate"  # "answer with the session's model"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The fields clawgate uses, and those it refuses unless asked for what it does anyway
    (``clawgate.gateway.params``); other OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=300)
    messages: list[ChatMessage] = Field(
        min_length=1, description="Only the last user message is sent: it must be the last "
                                  "message but for system ones, and text only")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=100)
    n: Annotated[int, Field(ge=1), WithJsonSchema(
        {"type": "integer", "minimum": 1, "maximum": 1})] | None = Field(
        default=None, description="Only 1: one answer (more is refused, naming ``n``)")
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Accepted and not used: the agent calls no client tools")
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description='Only "none" or "auto"')
    function_call: str | dict[str, Any] | None = Field(
        default=None, description='Only "none" or "auto"')
    response_format: dict[str, Any] | None = Field(
        default=None, description='Only {"type": "text"}')
    logprobs: bool | None = Field(default=None, description="Only false")
    modalities: list[str] | None = Field(default=None, description='Only ["text"]')


# --- what comes back ---------------------------------------------------------------------


class RunInfo(BaseModel):
    """clawgate's own field: the run that answered and how it ended. On a stream's last
    chunk after an ``error`` line, a status other than ``done``."""

    runId: str | None
    status: Literal["done", "failed", "killed", "timeout", "interrupted"] | None
    error: str | None


class RunEnd(RunInfo):
    """An error about a run that did not end ``done`` says which run, how it ended, and the
    text it wrote before (empty if none; it is in the session as well)."""

    reply: str


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    clawgate: RunEnd | None = Field(
        default=None, description="Only on an error about a run that ended without a whole "
                                  "reply (stopped, failed, timed out, interrupted)")


class ErrorBody(BaseModel):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail


class AnswerMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    finish_reason: Literal["stop"]
    logprobs: None
    message: AnswerMessage


class PromptTokens(BaseModel):
    cached_tokens: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokens


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    clawgate: RunInfo


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = Field(
        description='``stop``: the answer is whole; ``length``: it is not (an ``error`` line '
                    'came before, saying why)')
    logprobs: None


class ChatCompletionChunk(BaseModel):
    """One ``data:`` line of a streamed answer. ``usage`` is there only with
    ``stream_options.include_usage``: null on every chunk but the last, which has no choices
    and the usage. ``clawgate`` is on the chunk that ends the answer."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    clawgate: RunInfo | None = None


#: Models the OpenAPI document names that no route returns as JSON (the stream's chunks).
STREAMED_MODELS: tuple[type[BaseModel], ...] = (ChatCompletionChunk,)


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]


def _error(description: str, after_accepting: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": ErrorBody, "description": description}
    if after_accepting:
        answer["headers"] = {"x-should-retry": {
            "description": "``false`` once the message was accepted: sending the request "
                           "again (without the same ``Idempotency-Key``) would be a second "
                           "message, so OpenAI's SDKs do not retry it",
            "schema": {"type": "string", "enum": ["false"]}}}
    return answer


#: What the guard answers on every ``/v1`` route, before the route sees the request.
GUARDED: dict[int | str, dict[str, Any]] = {
    401: _error("No valid gateway token (``invalid_api_key``)"),
    403: _error("Sent from another web site, or to a host name the gateway does not serve"),
}

#: The answers of ``POST /v1/chat/completions``, for the OpenAPI document.
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole reply (``stream: false``), or with ``stream: true`` a "
                         "``text/event-stream`` of ``chat.completion.chunk`` objects, one "
                         "per ``data:`` line, ending in ``data: [DONE]``; a run that did not "
                         "end ``done`` sends an ``error`` line after what it wrote, and "
                         "finishes ``length``. Both are named ``chatcmpl-`` and the id of "
                         "the message the request sent.",
          "model": ChatCompletion,
          "headers": {"X-Clawgate-Run-Status": {
              "description": "How the run that answered ended (not streamed replies only): "
                             "always ``done`` (a reply cut short is an error)",
              "schema": {"type": "string", "enum": ["done"]}}},
          "content": {"text/event-stream": {"schema": {"oneOf": [
              {"$ref": "#/components/schemas/ChatCompletionChunk"},
              {"$ref": "#/components/schemas/ErrorBody"}]}}}},
    400: _error("Bad request: no user message, a request that does not end with the "
                "user's message, a parameter clawgate cannot honour, a bad session key"),
    **GUARDED,
    404: _error("No model by that name (``model_not_found``)"),
    409: _error("The message was dropped, or the run was stopped (what it wrote before is "
                "in ``error.clawgate.reply``)", True),
    413: _error("The body is over the limit"),
    422: _error("The Idempotency-Key was used before in this conversation for another "
                "message (``idempotency_key_reused``); nothing was changed"),
    500: _error("The store failed after the message was accepted", True),
    502: _error("The model failed (what the run wrote before is in "
                "``error.clawgate.reply``)", True),
    503: _error("The gateway is shutting down (a message it had accepted is kept and "
                "answered in its session once the gateway runs again), or the run was "
                "interrupted by a shutdown (what it wrote before is in "
                "``error.clawgate.reply``)", True),
    504: _error("The run timed out (what it wrote before is in ``error.clawgate.reply``)",
                True),
}

#: The answers of ``GET /v1/models/{model}`` besides the model.
MODEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **GUARDED,
    404: _error("No model by that name: neither an alias nor a configured provider's"),
}


class OpenAIError(Exception):
    """An error in OpenAI's shape. ``retry=False`` (the message was accepted: sending it
    again would be a second message) adds ``x-should-retry: false``, which OpenAI's SDKs
    obey instead of retrying a 409 or a 5xx on their own."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None, *,
                 retry: bool = True, param: str | None = None,
                 run: RunEnd | None = None) -> None:
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.retry, self.param, self.run = retry, param, run
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """``{"error": {...}}``; an error about a run carries ``clawgate`` (``RunEnd``)."""
        run = {} if self.run is None else {"clawgate": self.run.model_dump(mode="json")}
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code, **run}}

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content=self.body(),
                            headers=None if self.retry else {"x-should-retry": "false"})
