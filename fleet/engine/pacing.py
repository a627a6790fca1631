"""A token bucket that bounds how fast ``azcmagent connect`` starts across the fleet.

Each connect makes ARM writes charged to the service principal (a burst of 200 and 10 per second
refill, per region); a 1,000-host run that ignores this throttles itself into 429s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.capacity = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self.waiting = 0  # connects queued for a token (shown on the live display)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    async def acquire(self) -> None:
        if self.unlimited:
            return
        self.waiting += 1
        try:
            async with self._lock:  # FIFO: waiters are served in order
                while True:
                    now = time.monotonic()
                    elapsed = now - self._stamp
                    self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
                    self._stamp = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    await asyncio.sleep((1 - self._tokens) / self.rate)
        finally:
            self.waiting -= 1

    def describe(self) -> str:
        """The pacing state in a few words, for the live display."""
        if self.unlimited:
            return "connects unpaced"
        state = f"connects paced {self.rate:g}/s (burst {self.capacity:g})"
        return f"{state}, {self.waiting} waiting" if self.waiting else state


class CountingSemaphore(asyncio.Semaphore):
    """A semaphore that knows how many holders it has (agent operations running, bounded by
    ``--forks``), so the display can say it."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.limit = value
        self.held = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1
        super().release()
