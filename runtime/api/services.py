"""What the route handlers work with: a Runtime for the request's thread, the starter that launches
containers from a single-threaded helper, and the commit the server was built from."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydock.links.graphdb import GraphDB
from pydock.runtime.api.starter import Starter
from pydock.runtime.runtime import Runtime
from pydock.utils.paths import RootLayout

#: a pooled Runtime is replaced after this long (a fresh one sees the storage driver as it is now).
RUNTIME_MAX_AGE = 60.0
#: idle Runtimes kept; more are closed when given back (a burst of attaches must not leave them all).
MAX_IDLE = 8


class RuntimePool:
    """Runtimes for request threads: each in use by one thread at a time, reused while young.

    All of them share ONE name database connection: SQLite's POSIX locks are per process, and a
    second GraphDB opening (and closing) the file in this process would drop the first one's locks,
    letting another process delete the WAL under it ("disk I/O error").
    """

    def __init__(self, options: dict[str, Any]) -> None:
        """`options`: the Runtime's keyword arguments (root, driver, bridge, ...), as the CLI opens it."""
        self.options = options
        self.names = GraphDB(RootLayout(Path(options["root"]).absolute()).linkgraph)
        self.names.exists("/")  # connect now, before any other thread can
        self._idle: list[tuple[float, Runtime]] = []
        self._lock = threading.Lock()

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        """A Runtime for this thread alone until the block ends."""
        taken: tuple[float, Runtime] | None = None
        now = time.monotonic()
        with self._lock:
            while self._idle and taken is None:
                born, rt = self._idle.pop()
                if now - born < RUNTIME_MAX_AGE:
                    taken = (born, rt)
                else:
                    rt.close()  # the shared name database stays open: the Runtime does not own it
        if taken is None:
            taken = (now, Runtime(**self.options, names=self.names))
        try:
            yield taken[1]
        finally:
            with self._lock:
                keep = len(self._idle) < MAX_IDLE
                if keep:
                    self._idle.append(taken)
            if not keep:
                taken[1].close()

    def close(self) -> None:
        with self._lock:
            for _, rt in self._idle:
                rt.close()
            self._idle.clear()
        self.names.close()


@dataclass(frozen=True)
class Services:
    """Everything a route handler may call."""

    pool: RuntimePool
    starter: Starter
    git_commit: str = ""
    #: registries beside loopback that may be spoken to over plain http (the global --insecure-registry)
    insecure_registries: tuple[str, ...] = ()

    def close(self) -> None:
        self.starter.close()
        self.pool.close()
