"""A token bucket that bounds how fast ``azcmagent connect`` starts across the fleet.

Each connect makes ARM writes charged to the service principal (a burst of 200 and 10 per second
refill, per region); a 1,000-host run that ignores this throttles itself into 429s.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.capacity = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    async def acquire(self) -> None:
        if self.unlimited:
            return
        async with self._lock:  # FIFO: waiters are served in order
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
