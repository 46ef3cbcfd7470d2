"""From an HTTP answer a provider gave to the ``ProviderError`` tree, the same way for all.

Adapters pull the status, the provider's message and error codes (``error_object``,
``error_codes``), and the headers out of their SDK's exception; this module decides what that
means. Secrets are removed from every message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

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

#: A provider's own name for an error (OpenAI's ``code`` or ``type``, Anthropic's ``type``,
#: Google's ``status``) that settles what it is, whatever the status and the message say.
_KIND_OF_CODE: dict[str, type[ProviderError]] = {
    "insufficient_quota": BillingFailed, "billing_hard_limit_reached": BillingFailed,
    "billing_not_active": BillingFailed, "billing_error": BillingFailed,
    "context_length_exceeded": ContextOverflow,
    "rate_limit_exceeded": RateLimited, "rate_limit_error": RateLimited,
    "resource_exhausted": RateLimited,  # Google's 429: a rate or daily limit, not money
    "overloaded_error": Overloaded,
}

#: Read in the message only when no code above says what the error is. Anthropic sends a low
#: credit balance and a reached spend limit as a 400 ``invalid_request_error``. Narrow on
#: purpose: "quota" and "billing" also come with temporary rate limits ("Resource has been
#: exhausted (e.g. check quota).", "... check your plan and billing details").
_BILLING_PHRASES = ("credit balance", "insufficient credit", "insufficient balance",
                    "api usage limits", "billing hard limit")
_CONTEXT_PHRASES = ("maximum context length", "prompt is too long", "context window",
                    "too many tokens")


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
    provider: str, status: int, message: str, codes: Sequence[str] = (),
    headers: Mapping[str, str] | None = None, *, now: datetime,
) -> ProviderError:
    """The error an HTTP status (with the provider's message and error codes) stands for.

    A code the provider gave (see ``error_codes``) decides first, then the status; the
    message only where neither tells. A 2xx status means the error arrived inside a streamed
    answer: its type decides. ``now`` is when the answer came (a retry-after may be a date).
    """
    if 200 <= status < 300:
        return from_stream_error(provider, message, codes, headers, now=now)
    return _classify(provider, status, f"{message} (HTTP {status})", message, codes,
                     headers or {}, now)


def from_stream_error(
    provider: str, message: str, codes: Sequence[str],
    headers: Mapping[str, str] | None = None, *, now: datetime,
) -> ProviderError:
    """An error the provider sent in the middle of a streamed answer.

    Its type (``overloaded_error``, ``api_error``, ...) or a numeric code says what it is; an
    error we cannot place is taken as a server error, worth a retry.
    """
    status, kind = _stream_status(codes)
    text = f"{message} ({kind or 'an error'} in the streamed answer)"
    return _classify(provider, status, text, message, codes, headers or {}, now)


def error_object(body: object) -> Mapping[str, Any] | None:
    """The error object of a provider's error body: ``{"error": {...}}`` (OpenAI, Anthropic,
    Google), the object itself (what the OpenAI SDK keeps), or either as the first item of a
    list (Gemini's OpenAI-compatible endpoint answers ``[{"error": {...}}]``)."""
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def error_codes(body: object) -> tuple[str, ...]:
    """The provider's names for the error in ``body``, lower case: its ``code``, ``type``
    and ``status`` (OpenAI sets the first two, Anthropic the type, Google the status)."""
    error = error_object(body)
    if error is None:
        return ()
    found = (error.get(field) for field in ("code", "type", "status"))
    names = (str(v).strip().lower() for v in found
             if isinstance(v, str | int) and not isinstance(v, bool))
    return tuple(name for name in names if name)


def _stream_status(codes: Sequence[str]) -> tuple[int, str]:
    """The HTTP status a streamed error's codes stand for, and the code that said so."""
    for code in codes:
        if code.isascii() and code.isdigit() and 400 <= int(code) < 600:
            return int(code), code
        if code in _STATUS_OF_TYPE:
            return _STATUS_OF_TYPE[code], code
    return 500, codes[0] if codes else ""


def _classify(
    provider: str, status: int, text: str, message: str, codes: Sequence[str],
    headers: Mapping[str, str], now: datetime,
) -> ProviderError:
    kind = next((_KIND_OF_CODE[c] for c in codes if c in _KIND_OF_CODE), None)
    kind = kind or _kind_of_status(status, message.lower())
    if kind is RateLimited:
        return RateLimited(text, provider=provider, retry_after=retry_after(headers, now))
    return kind(text, provider=provider)


def _kind_of_status(status: int, message: str) -> type[ProviderError]:
    if status == 402 or (status in (400, 429) and _mentions(message, _BILLING_PHRASES)):
        return BillingFailed
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return AuthFailed
    if status in (400, 413, 422) and _mentions(message, _CONTEXT_PHRASES):
        return ContextOverflow
    if status in (503, 529) or "overloaded" in message:
        return Overloaded
    if status in (408, 504):
        return ProviderTimeout
    if status >= 500 or status == 409:
        return ProviderUnavailable
    return ProviderFatal


def _mentions(message: str, phrases: tuple[str, ...]) -> bool:
    return any(phrase in message for phrase in phrases)


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
