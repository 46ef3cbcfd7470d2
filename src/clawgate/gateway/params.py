"""Which Chat Completions parameters clawgate uses, ignores and refuses.

clawgate keeps each conversation itself and its agent answers in text, one answer a turn:
a request carries one new user message. So it

- **uses** ``model``, ``messages`` (the last user message's text), ``stream``,
  ``stream_options.include_usage`` and ``user``;
- **refuses** (400, ``param`` naming the field) a request that does not end with the user's
  message (a tool result, an assistant prefill: the user's message would be sent again as a
  new one);
- **accepts and ignores** everything else (system messages, earlier messages).
"""

from __future__ import annotations

from collections.abc import Sequence

from clawgate.gateway.openai_models import ChatCompletionRequest, ChatMessage, OpenAIError

#: Roles that do not take a turn in the conversation: they may follow the user's message.
INSTRUCTIONS = frozenset({"system", "developer"})


def new_text(body: ChatCompletionRequest) -> str:
    """The text of the user message the request sends, or an ``OpenAIError`` (400) that
    names the parameter clawgate cannot honour."""
    return _last_user_text(body.messages)


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
    return "".join(part.text or "" for part in content or () if part.type == "text")


def _refused(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param=param)
