"""What following one more session costs a connection that follows many already.

    python bench/feed_follow.py [--sessions 10000]

A client that sends to many sessions over one WebSocket connection follows each of them, one
at a time (chat.send does it). Prints the time all the follows took, and what one follow
costs once the connection follows that many (the event loop runs nothing else meanwhile):
the mean of the last hundred, and the longest of all (a garbage collection, a set growing).
In-process, on the feed's own classes.
"""

from __future__ import annotations

import argparse
import sys
import time

from clawgate.gateway.feed import Followers, Listener

LAST = 100


def follow_each(sessions: int) -> list[float]:
    """The seconds each follow took, in order."""
    listener = Listener(Followers())
    listener.follow_only(frozenset())
    took = []
    for n in range(sessions):
        before = time.perf_counter()
        listener.follow(f"session-{n}")
        took.append(time.perf_counter() - before)
    return took


def main(options: argparse.Namespace) -> int:
    took = follow_each(options.sessions)
    last = took[-LAST:]
    print(f"following {options.sessions} sessions one at a time on one connection: "
          f"{sum(took):.3f} s in all; one follow at that many "
          f"{sum(last) / len(last) * 1e6:.1f} us (mean of the last {len(last)}), "
          f"the slowest {max(took) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The cost of following many sessions.")
    parser.add_argument("--sessions", type=int, default=10_000)
    sys.exit(main(parser.parse_args()))
