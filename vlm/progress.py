"""Progress of a long step as log lines: one every PROGRESS_EVERY_SECONDS with what is done, the time so far and an
estimate of the time left, and one at the end when the step took that long. Short steps stay silent."""
from __future__ import annotations

import logging
import time

PROGRESS_EVERY_SECONDS = 10.0


class Progress:
    """`update(done)` after each piece of work; `finish()` at the end."""

    def __init__(self, what: str, total: int, log: logging.Logger, every: float = PROGRESS_EVERY_SECONDS):
        self.what, self.total, self.log, self.every = what, total, log, every
        self.started = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every or not done:
            return
        self.last = now
        elapsed = now - self.started
        if self.total and done < self.total:
            self.log.info("%s: %d of %d (%.0f%%), %.0f s, about %.0f s left", self.what, done, self.total,
                          100 * done / self.total, elapsed, elapsed / done * (self.total - done))
        else:
            self.log.info("%s: %d done, %.0f s", self.what, done, elapsed)

    def finish(self) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed >= self.every:
            self.log.info("%s: %d done in %.0f s", self.what, self.total, elapsed)
