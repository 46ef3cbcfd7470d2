"""The WebSocket protocol's frames and method parameters (documented in docs/protocol.md).

Client to gateway: ``{"type": "req", "id": <string or integer>, "method": "...",
"params": {...}}``. Gateway to client: ``{"type": "res", "id": ..., "ok": true, "payload":
{...}}`` or ``{"type": "res", "id": ..., "ok": false, "error": {"code": "...", "message":
"..."}}``, and events ``{"type": "event", "event": "...", "seq": <int or null>,
"payload": {...}}``. Parameters are checked strictly: a wrong type is an error, not a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from clawgate.domain import MAX_CHANNEL_MESSAGE_ID_CHARS, MAX_KEY_CHARS, DropPolicy, QueueMode
from clawgate.limits import HISTORY_ENTRIES, SESSION_ROWS, SESSIONS_LISTED

Frame = dict[str, Any]


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"  # not JSON, not an object, or not a request
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_METHOD = "unknown_method"
    INVALID_PARAMS = "invalid_params"  # wrong or missing parameters, or bad input
    UNKNOWN_SESSION = "unknown_session"
    SHUTTING_DOWN = "shutting_down"
    UNAVAILABLE = "unavailable"  # the store or a provider could not do it now
    INTERNAL = "internal"


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str, details: object = None) -> None:
        self.code, self.message, self.details = code, message, details
        super().__init__(message)

    def frame(self, request_id: object = None) -> Frame:
        error: Frame = {"code": self.code.value, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"type": "res", "id": request_id, "ok": False, "error": error}


@dataclass(frozen=True, slots=True)
class Request:
    id: str | int
    method: str
    params: dict[str, Any]


def parse_request(text: str, max_bytes: int) -> Request:
    """A request frame, or a ProtocolError that says what is wrong with it."""
    if len(text.encode()) > max_bytes:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frames are limited to {max_bytes} bytes")
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"not JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame is a JSON object")
    request_id = frame.get("id")
    if frame.get("type") != "req":
        raise ProtocolError(ErrorCode.BAD_FRAME, 'a request frame has "type": "req"')
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        raise ProtocolError(ErrorCode.BAD_FRAME, 'a request needs an "id" (string or integer)')
    method, params = frame.get("method"), frame.get("params", {})
    if not isinstance(method, str) or not method:
        raise ProtocolError(ErrorCode.BAD_FRAME, 'a request needs a "method"')
    if not isinstance(params, dict):
        raise ProtocolError(ErrorCode.INVALID_PARAMS, '"params" is a JSON object')
    unknown = set(frame) - {"type", "id", "method", "params"}
    if unknown:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown frame fields: {sorted(unknown)}")
    return Request(request_id, method, params)


def request_id_of(text: str) -> object:
    """The id of a frame that failed, when it can be read, so the error can name it."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame.get("id") if isinstance(frame, dict) else None


class Params(BaseModel):
    # Only the documented (camelCase) names: ``idempotency_key`` is an unknown parameter.
    model_config = ConfigDict(extra="forbid", strict=True)


SessionKey = Field(min_length=1, max_length=MAX_KEY_CHARS, pattern=r"^[A-Za-z0-9._:@+\-/]+$")


class SessionRef(Params):
    session: str = SessionKey


class ChatSend(SessionRef):
    text: str  # checked by the runtime, which says what is wrong with it
    idempotency_key: str | None = Field(
        default=None, alias="idempotencyKey", min_length=1,
        max_length=MAX_CHANNEL_MESSAGE_ID_CHARS)
    channel: str = Field(default="ws", pattern=r"^[a-z][a-z0-9_-]{0,31}$")


class ChatHistory(SessionRef):
    limit: int = Field(default=200, ge=1, le=HISTORY_ENTRIES)


class SessionsList(Params):
    limit: int = Field(default=100, ge=1, le=SESSIONS_LISTED)


class SessionsGet(SessionRef):
    limit: int = Field(default=50, ge=1, le=SESSION_ROWS)


def _any_case(value: object) -> object:
    """A name in any case (``STEER``), as the chat's /queue takes it; only text is changed."""
    return value.lower() if isinstance(value, str) else value


class QueueFields(Params):
    # JSON carries enum values as strings: these two accept them, in any case (and nothing
    # else: 3 is not a mode).
    mode: Annotated[QueueMode | None, BeforeValidator(_any_case)] = Field(
        default=None, strict=False)
    debounce_ms: int | None = Field(default=None, alias="debounceMs", ge=0, le=600_000)
    cap: int | None = Field(default=None, ge=1, le=1000)
    drop: Annotated[DropPolicy | None, BeforeValidator(_any_case)] = Field(
        default=None, strict=False)


class SessionsPatch(SessionRef):
    model: str | None = Field(default=None, min_length=1, max_length=300)
    queue: QueueFields | None = None


class Subscribe(Params):
    # session keys; None (or absent): every session
    sessions: list[Annotated[str, SessionKey]] | None = Field(default=None, max_length=1000)
    after: int | None = Field(default=None, ge=0)  # replay stored events after this seq


class NoParams(Params):
    pass


ParamsT = TypeVar("ParamsT", bound=Params)


def check(kind: type[ParamsT], params: dict[str, Any]) -> ParamsT:
    """``params`` as ``kind``, or an INVALID_PARAMS error naming each problem."""
    try:
        return kind.model_validate(params)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]) or "params",
                     "problem": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise ProtocolError(ErrorCode.INVALID_PARAMS, summary, problems) from None
