"""What a provider's HTTP error means: the wait it asks for in its headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clawgate.providers.http_errors import retry_after

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # a Thursday


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
