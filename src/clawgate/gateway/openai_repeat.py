"""Telling a request sent again from a new message, for the OpenAI-compatible API.

A request with an ``Idempotency-Key`` its conversation has seen is that message again. The
openai SDKs send no key of their own, but when a request times out they send it again (twice
by default), saying so in ``x-stainless-retry-count`` (1, 2, ...): such a retry, without a
key, whose newest user text is that of the session's newest HTTP message, received within the
run timeout, is that message again. A first attempt is never matched by its text: a user may
well say "yes" twice.
"""

from __future__ import annotations

from clawgate.domain import InboundMessage
from clawgate.gateway.openai_models import OpenAIError
from clawgate.runtime.runtime import Runtime

CHANNEL = "http"

#: How many of the session's latest messages a retry looks through for the one it repeats.
LOOK_BACK = 20


async def sent_before(runtime: Runtime, key: str, text: str, idempotency_key: str | None,
                      retry_count: str | None) -> InboundMessage | None:
    """The message this request sent before, or None for a new message. A key that names a
    message with other text is refused (422), and nothing changes."""
    if idempotency_key is not None:
        earlier = await runtime.store.find_delivered(key, CHANNEL, idempotency_key)
        if earlier is not None:
            check_same(earlier, text)
        return earlier
    if not _is_retry(retry_count):
        return None
    return await _retried(runtime, key, text)


def check_same(earlier: InboundMessage, text: str) -> None:
    """Refuse an ``Idempotency-Key`` used before for another message."""
    if earlier.text != text:
        raise OpenAIError(
            422, "this Idempotency-Key was used before in this conversation for another "
                 "message; send a new message with a new key (nothing was changed)",
            "invalid_request_error", "idempotency_key_reused")


def _is_retry(retry_count: str | None) -> bool:
    try:
        return retry_count is not None and int(retry_count) > 0
    except ValueError:
        return False


async def _retried(runtime: Runtime, key: str, text: str) -> InboundMessage | None:
    session = await runtime.store.get_session(key)
    if session is None:
        return None
    recent = await runtime.store.list_inbound(session.id, LOOK_BACK)
    newest = next((m for m in reversed(recent) if m.channel == CHANNEL), None)
    since = runtime.clock.now() - runtime.settings.run_timeout
    if (newest is None or newest.channel_message_id is not None or newest.text != text
            or newest.received_at < since):
        return None
    return newest
