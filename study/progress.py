"""A progress line for a study: photos done, photos per second, time left."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """Return seconds as '1 h 02 min', '3 min 05 s' or '42 s'."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class Progress:
    """Counts photos done against a total; reports the rate and the time left.

    ``report`` gets (done, total, line) after each batch; by default the line goes to stderr
    (through tqdm when it is installed).
    """

    def __init__(self, total: int, report: Callable[[int, int, str], None] | None = None, already: int = 0):
        self.total, self.done, self.already = total, 0, already
        self.start = time.perf_counter()
        self.report = report
        self._bar = None
        if report is None:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="photo", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = duration(left) if rate > 0 else "?"
        skipped = f" ({self.already} done before)" if self.already else ""
        return f"{self.done}/{self.total} photos{skipped}  {rate:.2f} photos/s  {eta} left"

    def update(self, n: int) -> None:
        self.done += n
        if self.report is not None:
            self.report(self.done, self.total, self.line())
        elif self._bar is not None:
            self._bar.update(n)
        else:
            print("\r" + self.line(), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.report is None:
            print(file=sys.stderr)
