"""Telling a request sent again from a new message, for the OpenAI-compatible API.

A request with an ``Idempotency-Key`` its conversation has seen is that message again.
"""

from __future__ import annotations

from clawgate.domain import InboundMessage
from clawgate.gateway.openai_models import OpenAIError
from clawgate.runtime.runtime import Runtime

CHANNEL = "http"


async def sent_before(runtime: Runtime, key: str, text: str,
                      idempotency_key: str | None) -> InboundMessage | None:
    """The message this request sent before, or None for a new message. A key that names a
    message with other text is refused (422), and nothing changes."""
    if idempotency_key is not None:
        earlier = await runtime.store.find_delivered(key, CHANNEL, idempotency_key)
        if earlier is not None:
            check_same(earlier, text)
        return earlier
    return None


def check_same(earlier: InboundMessage, text: str) -> None:
    """Refuse an ``Idempotency-Key`` used before for another message."""
    if earlier.text != text:
        raise OpenAIError(
            422, "this Idempotency-Key was used before in this conversation for another "
                 "message; send a new message with a new key (nothing was changed)",
            "invalid_request_error", "idempotency_key_reused")

