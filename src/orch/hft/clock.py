"""The one clock of an `orch hft` process: the time of day everything in it asks.

The risk gate's calendar, tier 2, day-order expiry, the daily-loss day, the simulated venue and the
simulated ticks all read `ProcessClock.now`, so one setting moves them together. Normally it is the
wall clock. With `ORCH_HFT_CLOCK_START` (tests and replays) it starts at that moment and ticks on at
the wall clock's pace, so a test can run the process in a session, on a holiday or at a weekend on
whatever day it runs.
"""

from __future__ import annotations

import time
from datetime import datetime


class ProcessClock:
    """Epoch seconds now: the wall clock, or `start` plus the time elapsed since the clock was made."""

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start
        if start is None:
            self.now = time.time
        else:
            began, origin = start.timestamp(), time.monotonic()
            # A closure over two floats: the hot path calls this per batch of ticks.
            self.now = lambda: began + (time.monotonic() - origin)
