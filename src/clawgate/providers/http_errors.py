"""From an HTTP answer a provider gave to the ``ProviderError`` tree, the same way for all.

Adapters pull the status, the provider's message and error code, and the headers out of their
SDK's exception; this module decides what that means. Secrets are removed from every message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from clawgate.domain import MAX_RETRY_AFTER_S
from clawgate.errors import (
    AuthFailed,
    BillingFailed,
    ContextOverflow,
    Overloaded,
    ProviderError,
    ProviderFatal,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

_CONTEXT_HINTS = ("context_length_exceeded", "maximum context length", "prompt is too long",
                  "context window", "too many tokens")
_BILLING_HINTS = ("insufficient_quota", "billing", "credit balance", "quota")


#: What an error sent inside a streamed answer means, as the HTTP status it stands for: the
#: answer began with a 200, so only the error's type tells (Anthropic's types, OpenAI's codes).
_STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "invalid_api_key": 401,
    "billing_error": 402, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413, "rate_limit_error": 429, "rate_limit_exceeded": 429,
    "insufficient_quota": 429, "api_error": 500, "server_error": 500, "timeout_error": 504,
    "overloaded_error": 529, "context_length_exceeded": 400,
}


def from_status(
    provider: str, status: int, message: str, code: str | None = None,
    headers: Mapping[str, str] | None = None, *, now: datetime,
) -> ProviderError:
    """The error an HTTP status (with the provider's message and code) stands for.

    A 2xx status means the error arrived inside a streamed answer: its type decides. ``now``
    is when the answer came (a retry-after may be a date).
    """
    if 200 <= status < 300:
        return from_stream_error(provider, message, code, headers, now=now)
    return _classify(provider, status, f"{message} (HTTP {status})", _hint(code, message),
                     headers or {}, now)


def from_stream_error(
    provider: str, message: str, code: str | None, headers: Mapping[str, str] | None = None,
    *, now: datetime,
) -> ProviderError:
    """An error the provider sent in the middle of a streamed answer.

    Its type (``overloaded_error``, ``api_error``, ...) or a numeric code says what it is; an
    error we cannot place is taken as a server error, worth a retry.
    """
    kind = (code or "").strip()
    status = int(kind) if kind.isdigit() and 400 <= int(kind) < 600 else _STATUS_OF_TYPE.get(
        kind, 500)
    text = f"{message} ({kind or 'an error'} in the streamed answer)"
    return _classify(provider, status, text, _hint(code, message), headers or {}, now)


def _hint(code: str | None, message: str) -> str:
    return f"{code or ''} {message}".lower()


def _classify(
    provider: str, status: int, text: str, hint: str, headers: Mapping[str, str],
    now: datetime,
) -> ProviderError:
    if status == 429:
        if any(h in hint for h in _BILLING_HINTS):
            return BillingFailed(text, provider=provider)
        return RateLimited(text, provider=provider, retry_after=retry_after(headers, now))
    if status in (401, 403):
        return AuthFailed(text, provider=provider)
    if status == 402 or (status == 400 and any(h in hint for h in _BILLING_HINTS)):
        return BillingFailed(text, provider=provider)
    if status in (400, 413, 422) and any(h in hint for h in _CONTEXT_HINTS):
        return ContextOverflow(text, provider=provider)
    if status in (503, 529) or "overloaded" in hint:
        return Overloaded(text, provider=provider)
    if status in (408, 504):
        return ProviderTimeout(text, provider=provider)
    if status >= 500 or status == 409:
        return ProviderUnavailable(text, provider=provider)
    return ProviderFatal(text, provider=provider)


def from_transport(provider: str, exc: Exception, timeout_s: float) -> ProviderError | None:
    """A failure of the HTTP transport under both SDKs (which sometimes let it through)."""
    import httpx2

    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout(f"no answer within {timeout_s:g}s", provider=provider)
    if isinstance(exc, httpx2.TransportError):
        return ProviderUnavailable(f"the connection broke: {type(exc).__name__}",
                                   provider=provider)
    return None


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI sends it) or ``retry-after`` (seconds,
    or an HTTP date: GMT when it names no zone), at most ``MAX_RETRY_AFTER_S``.

    None when neither header holds a usable time (negative, infinite, not a number or a
    date): the caller's own backoff applies. ``now`` is when the answer came.
    """
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    millis = _seconds(lowered.get("retry-after-ms", ""))
    if millis is not None:
        return min(millis / 1000, MAX_RETRY_AFTER_S)
    value = lowered.get("retry-after", "")
    seconds = _seconds(value)
    if seconds is None:
        seconds = _seconds_until(value, now)
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)


def _seconds(value: str) -> float | None:
    """``value`` as a finite, non-negative number of seconds; None if it is not one."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _seconds_until(value: str, now: datetime) -> float | None:
    """Seconds from ``now`` to the HTTP date ``value`` (0 if it has passed); None if
    ``value`` is not a date."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # no zone, or "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
