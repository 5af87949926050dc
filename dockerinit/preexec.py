"""What runs between fork and exec of `lxc-start`: Docker 0.7's `unshare -m; mount --make-rslave /` without the shell.

In the child: a private mount namespace whose `/` is a recursive slave (host mounts still propagate
in, nothing lxc mounts propagates out, so the host mount table is the same before and after a run),
and a session of its own (a terminal's job-control signals go to pydock, which forwards them).
Inherited fds are closed by the caller (`close_fds=True`); lxc refuses to run with stray fds.
"""

from __future__ import annotations

import os

from pydock.utils.mount import CLONE_NEWNS, make_rslave, unshare


def isolate_mounts() -> None:
    """unshare(CLONE_NEWNS) + make / rslave: call in the child, before exec."""
    unshare(CLONE_NEWNS)
    make_rslave("/")


def child_setup() -> None:
    """The `preexec_fn` for subprocess: new session, private slave mount namespace.

    Runs in the forked child, so it may only raise (subprocess reports it to the parent).
    """
    os.setsid()
    isolate_mounts()
