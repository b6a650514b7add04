"""Ctrl-C during training: stop at the next step boundary with a checkpoint, not mid-step.

Inside :class:`StopOnInterrupt` the first SIGINT only sets :attr:`StopOnInterrupt.requested`
(and says so on stderr); the trainer checks it after every step, writes ``last.pt`` and raises
:class:`TrainingInterrupted`. A second SIGINT interrupts at once (the default
``KeyboardInterrupt``). The handler is installed only in the main thread of a single-process run:
under ``torchrun`` the ranks would not see the signal at the same step, so there the default
behaviour stays and the last periodic checkpoint is what a resume continues from.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C at ``step``; ``checkpoint_step`` is the step ``last.pt``
    holds (``None`` when no checkpoint was written yet)."""

    def __init__(self, step: int, checkpoint_step: int | None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint_step = checkpoint_step


class StopOnInterrupt:
    """Context manager: the first Ctrl-C requests a stop, the second interrupts (module
    docstring); ``enabled=False`` leaves the signal alone."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\ndmlkit: stopping after this step with a checkpoint (Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopOnInterrupt:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
