"""Work that may wait until a command's caller has its answer: deleting what is already unreachable (a
tree renamed into a trash directory), closing what the command opened. Front ends that can answer
before their process ends (the CLI command server's worker) collect it and run it after the answer;
everywhere else (library callers, a command run in the client's own process, a forked monitor, and
any thread but the collecting one: the API server's request threads, which may run for days under a
`pydock serve` that is itself a command) it runs at once, so nothing is ever left pending by a
process that will not run it soon."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__package__)

_pending: list[Callable[[], None]] | None = None  # None: not collecting (run at once)
_collector = 0  # the thread collecting


def later(work: Callable[[], None]) -> None:
    """Run `work` after the answer when this thread's front end collects, else now."""
    if _pending is None or threading.get_ident() != _collector:
        work()
    else:
        _pending.append(work)


@contextmanager
def collecting() -> Iterator[list[Callable[[], None]]]:
    """Collect `later` work for the block; the list is the caller's to `run` once it has answered."""
    global _pending, _collector
    _pending = collected = []
    _collector = threading.get_ident()
    try:
        yield collected
    finally:
        _pending = None


def run(work: list[Callable[[], None]]) -> None:
    """Run collected work in order; a failure is logged and the rest still runs (nobody waits for it)."""
    for item in work:
        try:
            item()
        except Exception as err:  # noqa: BLE001 - after the answer: nothing to report it to
            log.debug("work after the answer failed: %s", err, exc_info=True)


def _forked() -> None:
    global _pending
    _pending = None  # a child (a monitor) runs its own work at once: nobody would run it later


os.register_at_fork(after_in_child=_forked)


def discard_tree(path: Path, trash: Path) -> None:
    """Make the tree at `path` vanish at once (a rename into `trash`, on its filesystem) and delete it
    `later`, with whatever earlier discards a crash left in `trash`. Where it cannot be renamed (another
    filesystem), it is deleted now. Errors deleting are ignored, as rmtree(ignore_errors) does."""
    if not os.path.lexists(path):
        return  # gone already
    try:
        trash.mkdir(mode=0o700, exist_ok=True)
        os.rename(path, trash / f"{path.name}.{os.urandom(4).hex()}")
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    later(lambda: empty_trash(trash))


def empty_trash(trash: Path) -> None:
    """Delete everything in `trash` (processes emptying it at once only skip each other's entries)."""
    try:
        entries = os.listdir(trash)
    except FileNotFoundError:
        return
    for entry in entries:
        shutil.rmtree(trash / entry, ignore_errors=True)
