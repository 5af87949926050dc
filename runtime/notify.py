"""In-process wake-ups: a start, stop or removal made by this process wakes its waiters at once
(the Engine API's `wait` and `attach` threads); changes other processes make are found by the
waiters' own polling, at most a tenth of a second late."""

from __future__ import annotations

import threading

_cond = threading.Condition()
_generation = 0


def generation() -> int:
    """A number that grows with every change this process announced; read it before looking."""
    return _generation


def changed() -> None:
    """Announce that a container changed state (started, stopped, removed)."""
    global _generation
    with _cond:
        _generation += 1
        _cond.notify_all()


def wait(seen: int, timeout: float) -> None:
    """Sleep until a change after generation `seen` is announced, or `timeout` seconds pass."""
    with _cond:
        if _generation == seen:
            _cond.wait(timeout)
