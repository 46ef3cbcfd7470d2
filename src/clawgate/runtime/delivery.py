"""Delivering replies from the outbox to the channels that push them.

One delivery pass at a time per process: take the due replies of each channel (at most one
per target, oldest first, so a chat sees its replies in order), send them, and record the
result. A failed send is retried with growing waits; only a permanent refusal gives up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from clawgate.channels.base import Sender
from clawgate.clock import Clock
from clawgate.domain import Outbound, retry_delay
from clawgate.errors import ClawgateError, DeliveryFailed
from clawgate.store.protocol import Store

log = logging.getLogger(__name__)

#: How long a claimed reply is left to its sender before anyone may try again.
SEND_LEASE = timedelta(seconds=60)


class Deliverer:
    def __init__(self, store: Store, senders: Sequence[Sender], clock: Clock) -> None:
        self._store = store
        self._senders = {sender.channel: sender for sender in senders}
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def kick(self) -> None:
        """Deliver what is due soon (a run just ended, or a retry is due)."""
        if not self._senders:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._passes(), name="clawgate delivery")

    async def drain(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _passes(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                await self.deliver_due()
            except ClawgateError as exc:  # the store is closed or busy: the next tick retries
                log.warning("delivery pass stopped: %s", exc)
                return

    async def deliver_due(self) -> int:
        """One pass over every channel; return how many replies were delivered."""
        delivered = 0
        for channel, sender in self._senders.items():
            for item in await self._store.take_deliveries(channel, SEND_LEASE):
                delivered += await self._deliver(sender, item)
        return delivered

    async def _deliver(self, sender: Sender, item: Outbound) -> int:
        try:
            await _send(sender, item)
        except DeliveryFailed as exc:
            retry_at = None if exc.permanent else (
                self._clock.now() + retry_delay(item.attempts, exc.retry_after))
            await self._store.mark_undelivered(item.id, str(exc), retry_at)
            log.warning("reply %s to %s:%s not delivered (attempt %d): %s", item.id,
                        item.channel, item.target, item.attempts, exc)
            return 0
        await self._store.mark_delivered(item.id)
        return 1


async def _send(sender: Sender, item: Outbound) -> None:
    """Send one reply; a sender's own bug counts as a failed try (retried later, logged),
    so it cannot end the delivery pass and leave the rest of the batch claimed."""
    try:
        await sender.send(item.target, item.text)
    except DeliveryFailed:
        raise
    except Exception as exc:  # the channel's code, not ours: record it and carry on
        log.exception("sender for %s failed on reply %s", item.channel, item.id)
        raise DeliveryFailed(f"the {item.channel} sender failed: "
                             f"{type(exc).__name__}: {exc}") from exc
