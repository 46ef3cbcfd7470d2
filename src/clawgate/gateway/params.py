"""Which Chat Completions parameters clawgate uses, ignores and refuses.

clawgate keeps each conversation itself and its agent answers in text, one answer a turn:
a request carries one new user message. So it

- **uses** ``model``, ``messages`` (the last user message's text), ``stream``,
  ``stream_options.include_usage`` and ``user``;
- **refuses** (400, ``param`` naming the field) what asks for an answer it would not give:
  a request that does not end with the user's message (a tool result, an assistant prefill:
  the user's message would be sent again as a new one), ``n`` over 1, a ``tool_choice`` or
  ``function_call`` other than ``"none"``/``"auto"``, a ``response_format`` other than
  text, ``logprobs``, ``modalities`` other than text, and any content part that is not text;
- **accepts and ignores** everything else (sampling settings, ``max_tokens``, ``stop``,
  ``seed``, ``tools`` with ``tool_choice`` ``"auto"``, system messages, earlier messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clawgate.gateway.openai_models import ChatCompletionRequest, ChatMessage, OpenAIError

#: Roles that do not take a turn in the conversation: they may follow the user's message.
INSTRUCTIONS = frozenset({"system", "developer"})
#: ``tool_choice`` and ``function_call`` values that do not oblige the model to call a tool.
FREE_CHOICES = frozenset({"none", "auto"})


def new_text(body: ChatCompletionRequest) -> str:
    """The text of the user message the request sends, or an ``OpenAIError`` (400) that
    names the parameter clawgate cannot honour."""
    refuse_unsupported(body)
    return _last_user_text(body.messages)


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    if body.n is not None and body.n > 1:
        raise _refused("n", f"clawgate gives one answer a request (n=1), not {body.n}")
    for name in ("tool_choice", "function_call"):
        choice = getattr(body, name)
        if choice is not None and not (isinstance(choice, str) and choice in FREE_CHOICES):
            raise _refused(name, f'{name} may be "none" or "auto": clawgate\'s agent does not '
                                 "call the request's tools (they are accepted and not used)")
    if body.response_format is not None and body.response_format != {"type": "text"}:
        raise _refused("response_format", 'clawgate answers in text: response_format may '
                                          'only be {"type": "text"}')
    if body.logprobs:
        raise _refused("logprobs", "clawgate does not return log probabilities")
    if body.modalities is not None and set(body.modalities) != {"text"}:
        raise _refused("modalities", 'clawgate answers in text: modalities may only be '
                                     '["text"]')
    parts = _non_text_parts(body.messages)
    if parts:
        place, kind = parts[0]
        raise _refused(place, f"clawgate sends text only: a {kind[:40]!r} content part "
                              "cannot be sent")


def _non_text_parts(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    return [(f"messages.[{i}].content.[{j}].type", part.type)
            for i, message in enumerate(messages) if isinstance(message.content, list)
            for j, part in enumerate(message.content) if part.type != "text"]


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    turns = [m for m in messages if m.role not in INSTRUCTIONS]
    if turns and turns[-1].role != "user":
        raise _refused("messages", (
            f"the last message is the {turns[-1].role}'s; it must be the user's (system "
            "messages aside). clawgate keeps the conversation itself and sends only the "
            "newest user message: tool results and assistant prefill are not supported"))
    text = _text(turns[-1]) if turns else ""
    if not text.strip():
        raise _refused("messages", "the request needs a user message with text (the "
                                   "newest one is what clawgate sends to its agent)")
    return text


def _text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content or ())


def _refused(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param=param)


def located(loc: Sequence[Any]) -> str | None:
    """The ``param`` of a validation error at ``loc`` (``("body", "messages", 0, ...)``):
    the request field, or the header, at fault; None for the body as a whole."""
    where = list(loc[1:]) if loc and loc[0] in ("body", "header", "query", "path") else []
    return where[0] if where and isinstance(where[0], str) else None
