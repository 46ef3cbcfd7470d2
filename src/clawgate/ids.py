"""Opaque, time-ordered ids: a prefix, 10 characters of milliseconds, 16 random.

Within one process ids only grow, even inside one millisecond, so two records made one after
the other sort in that order (ties on a timestamp fall back to the id).
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _next() -> tuple[int, int]:
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:  # same millisecond (or the wall clock stepped back)
            millis, rand = last_millis, last_random + 1
            if rand >= 1 << _RANDOM_BITS:
                millis, rand = millis + 1, 0
        else:
            rand = secrets.randbits(_RANDOM_BITS - 1)  # leave room to count up
        _last = (millis, rand)
        return _last


def new_id(prefix: str) -> str:
    millis, rand = _next()
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"
