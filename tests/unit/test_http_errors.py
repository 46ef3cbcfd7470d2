"""What a provider's HTTP error means: its kind, from real-looking bodies, and the wait it asks
for in its headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clawgate.errors import (
    AuthFailed,
    BillingFailed,
    ContextOverflow,
    Overloaded,
    ProviderError,
    ProviderFatal,
    ProviderUnavailable,
    RateLimited,
)
from clawgate.providers.http_errors import error_codes, error_object, from_status, retry_after

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # a Thursday


def _openai(message: str, kind: str, code: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _anthropic(kind: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


GEMINI_EXHAUSTED = [{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                               "message": "Resource has been exhausted (e.g. check quota)."}}]

BODIES = [
    # OpenAI
    ("openai rate limit", 429, _openai(
        "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit "
        "30000, Used 29500, Requested 1200. Please try again in 1.4s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.", "tokens",
        "rate_limit_exceeded"), RateLimited),
    ("openai out of quota", 429, _openai(
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota", "insufficient_quota"), BillingFailed),
    ("openai hard limit", 400, _openai("Billing hard limit has been reached",
                                       "invalid_request_error", "billing_hard_limit_reached"),
     BillingFailed),
    ("openai billing not active", 429, _openai(
        "Your account is not active, please check your billing details on our website.",
        "billing_not_active", "billing_not_active"), BillingFailed),
    ("openai context", 400, _openai(
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130512 tokens. Please reduce the length of the messages.",
        "invalid_request_error", "context_length_exceeded"), ContextOverflow),
    ("openai bad key", 401, _openai("Incorrect API key provided: sk-abc***xyz.",
                                    "invalid_request_error", "invalid_api_key"), AuthFailed),
    # Anthropic
    ("anthropic rate limit", 429, _anthropic(
        "rate_limit_error", "This request would exceed the rate limit for your organization "
        "of 50,000 input tokens per minute. Please reduce the prompt length or the maximum "
        "tokens requested, or try again later."), RateLimited),
    ("anthropic low credit", 400, _anthropic(
        "invalid_request_error", "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits."), BillingFailed),
    ("anthropic spend limit", 400, _anthropic(
        "invalid_request_error", "You have reached your specified API usage limits. You will "
        "regain access on 2026-02-01 at 00:00 UTC."), BillingFailed),
    ("anthropic billing error", 402, _anthropic("billing_error", "Billing error"),
     BillingFailed),
    ("anthropic prompt too long", 400, _anthropic(
        "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"),
     ContextOverflow),
    ("anthropic overloaded", 529, _anthropic("overloaded_error", "Overloaded"), Overloaded),
    # OpenRouter
    ("openrouter no credits", 402, {"error": {
        "code": 402, "message": "Insufficient credits. Add more using "
        "https://openrouter.ai/settings/credits"}}, BillingFailed),
    ("openrouter free-model limit", 429, {"error": {
        "code": 429, "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to "
        "unlock 1000 free model requests per day", "metadata": {"headers": {
            "X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0"}}}}, RateLimited),
    ("openrouter upstream limit", 429, {"error": {
        "code": 429, "message": "Provider returned error", "metadata": {
            "raw": "google/gemini-2.0-flash-exp:free is temporarily rate-limited upstream. "
                   "Please retry shortly.", "provider_name": "Google AI Studio"}}},
     RateLimited),
    # Gemini's OpenAI-compatible endpoint
    ("gemini exhausted, a list", 429, GEMINI_EXHAUSTED, RateLimited),
    ("gemini exhausted, as the SDK keeps it", 429, GEMINI_EXHAUSTED[0]["error"], RateLimited),
    ("gemini free tier", 429, {"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "You exceeded your current "
        "quota, please check your plan and billing details. For more information on this "
        "error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."}}, RateLimited),
    ("quota in the text, no code", 429, {"error": {
        "message": "Quota exceeded for quota metric 'Generate Content API requests per "
                   "minute'."}}, RateLimited),
    # Ollama's OpenAI-compatible endpoint
    ("ollama no such model", 404, _openai('model "llama3.3" not found, try pulling it first',
                                          "not_found_error"), ProviderFatal),
    ("ollama busy", 503, _openai("server busy, please try again.  maximum pending requests "
                                 "exceeded", "api_error"), Overloaded),
    ("ollama out of memory", 500, _openai("model requires more system memory (9.2 GiB) than "
                                          "is available (4.1 GiB)", "api_error"),
     ProviderUnavailable),
]


def _translated(status: int, body: object, headers: dict[str, str] | None = None
                ) -> ProviderError:
    error = error_object(body)
    message = str(error["message"]) if error else "?"
    return from_status("p", status, message, error_codes(body), headers, now=NOW)


@pytest.mark.parametrize(("status", "body", "kind"), [row[1:] for row in BODIES],
                         ids=[row[0] for row in BODIES])
def test_a_real_error_body_is_classed_by_its_status_and_code(
    status: int, body: object, kind: type[ProviderError]
) -> None:
    error = _translated(status, body)
    assert type(error) is kind
    assert f"HTTP {status}" in str(error)


def test_a_temporary_quota_429_keeps_its_retry_after_and_rests_only_the_model() -> None:
    error = _translated(429, GEMINI_EXHAUSTED, {"retry-after": "20"})
    assert isinstance(error, RateLimited)
    assert error.retry_after == 20
    assert "Resource has been exhausted" in str(error)


def test_the_codes_of_a_body_come_from_code_type_and_status_in_lower_case() -> None:
    assert error_codes(GEMINI_EXHAUSTED) == ("429", "resource_exhausted")
    assert error_codes(_anthropic("billing_error", "x")) == ("billing_error",)
    assert error_codes(_openai("x", "tokens", "rate_limit_exceeded")) == (
        "rate_limit_exceeded", "tokens")
    assert error_codes("Bad Gateway") == ()
    assert error_codes([]) == ()


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "30"}, 30),
        ({"retry-after": "0.15"}, 0.15),
        ({"retry-after-ms": "1500", "retry-after": "30"}, 1.5),  # OpenAI's, the finer one
        ({"retry-after-ms": "soon", "retry-after": "30"}, 30),
        ({"retry-after": "Thu, 01 Jan 2026 12:00:45 GMT"}, 45),
        ({"retry-after": "Thu, 01 Jan 2026 13:00:45 +0100"}, 45),
        ({"retry-after": "Thu, 01 Jan 2026 12:00:45 -0000"}, 45),  # a date "in no zone"
        ({"retry-after": "Thu, 01 Jan 2026 12:00:45"}, 45),  # no zone at all
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 -0000"}, 0),  # passed: try now
        ({"retry-after": "1e10"}, 3600),  # at most an hour, as for deliveries
        ({"retry-after-ms": "86400000"}, 3600),
        ({"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"}, 3600),
    ],
)
def test_retry_after_is_read_from_either_header_as_seconds_from_now(
    headers: dict[str, str], seconds: float
) -> None:
    assert retry_after(headers, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["inf", "-inf", "nan", "-5", "soon", "", "Thu, 32 Jan 2026 12:00:00 GMT",
              "Thu, 01 Jan 99999 12:00:00 GMT"],
)
def test_a_retry_after_that_is_no_usable_time_is_ignored(value: str) -> None:
    assert retry_after({"retry-after": value}, NOW) is None
    assert retry_after({"retry-after-ms": value}, NOW) is None


def test_a_date_is_counted_from_the_now_given_not_the_wall_clock() -> None:
    date = {"retry-after": "Thu, 01 Jan 2026 12:01:00 GMT"}
    assert retry_after(date, NOW) == 60
    assert retry_after(date, datetime(2026, 1, 1, 12, 0, 50, tzinfo=UTC)) == 10
