"""A one-line progress display on stderr for long loops (training steps, embedding batches).

On a terminal the line is redrawn in place (at most 5 times per second); otherwise (a log file, a
pipe, CI) a line is printed at every tenth of the loop, and not within ``min_interval_s`` seconds
of the start or of the previous line (short loops stay quiet in logs). :meth:`Progress.message` prints a line of
its own (an evaluation result) without tearing the progress line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Progress of ``total`` units: ``"<label> <done>/<total> [unit] <fields> eta <s>s"``."""

    def __init__(
        self,
        total: int | None,
        enabled: bool,
        label: str = "step",
        unit: str = "",
        stream: TextIO | None = None,
        min_interval_s: float = 0.0,
    ) -> None:
        self.total = total
        self.enabled = enabled
        self.label = label
        self.unit = f" {unit}" if unit else ""
        self.min_interval_s = min_interval_s
        self.stream = sys.stderr if stream is None else stream
        self.interactive = self.stream.isatty()
        self._last_draw = 0.0
        self._start = time.perf_counter()
        self._start_done: int | None = None
        self._next_decile = 1
        self._drawn = False

    def update(self, done: int, fields: dict[str, float] | None = None) -> None:
        """Show ``done`` of ``total`` with ``fields`` (for example loss, lr, images/s)."""
        if not self.enabled:
            return
        if self._start_done is None:
            self._start_done = done - 1
            self._start = time.perf_counter()
        now = time.perf_counter()
        shown = "".join(f" {k} {v:.4g}" for k, v in (fields or {}).items())
        of, eta = "", ""
        if self.total:
            of = f"/{self.total}"
            remaining = (now - self._start) / max(done - self._start_done, 1) * (self.total - done)
            eta = f" eta {remaining:.0f}s"
        line = f"{self.label} {done}{of}{self.unit}{shown}{eta}"
        if self.interactive:
            if now - self._last_draw >= 0.2 or done == self.total:
                self.stream.write("\r" + line.ljust(79))
                self.stream.flush()
                self._last_draw, self._drawn = now, True
        elif (not self.total or done * 10 >= self._next_decile * self.total) and (
            now - max(self._last_draw, self._start) >= self.min_interval_s
        ):
            self.stream.write(line + "\n")
            self._last_draw = now
            self.stream.flush()
            if self.total:
                self._next_decile = done * 10 // self.total + 1

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own (after the progress line on a terminal)."""
        if not self.enabled:
            return
        if self._drawn:
            self.stream.write("\r" + " " * 79 + "\r")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the progress line on a terminal."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
