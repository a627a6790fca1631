"""Work deferred to the end of the current turn of the event loop.

Sinks that write per event (the run store's attempts, the transcripts, the run log) do it once
per turn instead: a host script's records arrive in bursts, and hundreds of hosts' in one turn,
so one commit or one write serves them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class AtTurnEnd:
    """Calls ``action`` once at the end of the running loop's current turn, however often
    :meth:`request` is called in it; at once when no loop is running."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action = action
        self._scheduled = False

    def request(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._action()
            return
        self._scheduled = True
        loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        self._action()
