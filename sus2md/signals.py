"""Graceful stops: the first SIGINT (Ctrl-C) or SIGTERM (a batch scheduler's) asks a long run to
stop at its next safe point, where it writes its checkpoint; a second SIGINT stops at once.
Shared by ``sus2md run`` (after the current report) and ``sus2md train`` (after the current step)."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["stop_on_signals"]


@contextmanager
def stop_on_signals(target: Any, announce: Callable[[int], None]) -> Iterator[None]:
    """While inside, SIGINT / SIGTERM set ``target.stop_signal`` and call ``announce(signum)``; a
    second SIGINT raises KeyboardInterrupt.  Outside the main thread (no handlers there) nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if target.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        target.stop_signal = signum
        announce(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
