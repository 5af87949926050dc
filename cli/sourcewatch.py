"""Whether the command server still runs the code on disk: the (mtime, size) of every loaded pydock module's
file and directory when it started, then an inotify watch on those directories (and the ones holding
them, where a package may be a symlink that gets swapped), so that each command costs the server one
non-blocking read instead of a stat per file (~110 of them: 0.5-0.7 ms a command). Without inotify (no
watches left, say) it stats them all again for each command, as it always did."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from pydock.utils.inotify import Inotify

log = logging.getLogger(__package__)

#: (st_mtime_ns, st_size) by path
Stamp = dict[str, tuple[int, int]]


def loaded_source() -> Stamp:
    """The stamp of every loaded pydock module's file and of its directory."""
    stamp: Stamp = {}
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not name.startswith("pydock.") or not origin:
            continue
        for path in (origin, os.path.dirname(origin)):
            st = os.stat(path)
            stamp[path] = (st.st_mtime_ns, st.st_size)
    return stamp


def stamp_changed(stamp: Stamp) -> bool:
    """Whether any stamped file or directory is missing or has another mtime or size now."""
    for path, seen in stamp.items():
        try:
            st = os.stat(path)
        except OSError:
            return True
        if (st.st_mtime_ns, st.st_size) != seen:
            return True
    return False


@dataclass
class SourceWatch:
    """The loaded source, taken when the server starts (`start`); `changed` once anything in it changed."""

    stamp: Stamp
    notify: Inotify | None
    #: a change seen already (between the stamp and the watches, or by an earlier `changed`)
    seen: bool = False

    @classmethod
    def start(cls) -> SourceWatch:
        stamp = loaded_source()
        notify: Inotify | None = None
        try:
            notify = Inotify()
            for folder in sorted({os.path.dirname(path) for path in stamp}):  # modules' folders and theirs
                notify.watch(folder)
        except OSError as err:
            log.debug("source not watched (%s): each command stats it instead", err)
            if notify is not None:
                notify.close()
            notify = None
        # a change between the stamp and the watches: only the stamp can tell
        return cls(stamp, notify, seen=notify is not None and stamp_changed(stamp))

    def changed(self) -> bool:
        """Whether the source differs from the stamp now (for good, once it did)."""
        if not self.seen:
            self.seen = self.notify.drain() if self.notify is not None else stamp_changed(self.stamp)
        return self.seen

    def close(self) -> None:
        """Let go of the watches (a worker keeps nothing of its server's)."""
        if self.notify is not None:
            self.notify.close()
            self.notify = None
