"""What runs between fork and exec of `lxc-start`: Docker 0.7's `unshare -m; mount --make-rslave /` without the shell.

In the child: a private mount namespace whose `/` is a recursive slave (host mounts still propagate
in, nothing lxc mounts propagates out, so the host mount table is the same before and after a run),
and a session of its own (a terminal's job-control signals go to pydock, which forwards them).
Inherited fds are closed by the caller (`close_fds=True`); lxc refuses to run with stray fds.
"""

from __future__ import annotations

import os
import signal

from pydock.utils.mount import CLONE_NEWNS, make_rslave, unshare


def isolate_mounts() -> None:
    """unshare(CLONE_NEWNS) + make / rslave: call in the child, before exec."""
    unshare(CLONE_NEWNS)
    make_rslave("/")


def reset_signals() -> None:
    """Every signal back to its default action and none blocked: a container's command must not inherit
    what its launcher ignored (a shell's `&` ignores SIGINT, `nohup` SIGHUP), or `trap ... INT` in it
    silently does nothing, as POSIX shells may not trap a signal ignored on entry. Docker's commands
    start from a daemon, with every signal at its default."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            continue  # a signal the C library reserves (its real-time ones for threads)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


#: child_setup as programs: util-linux's unshare (a mount namespace whose `/` is a recursive slave) and
#: coreutils' env (every signal at its default); the session is subprocess's start_new_session
EXTERNAL_STEPS = (("unshare", "--mount", "--propagation", "slave", "--"), ("env", "--default-signal", "--"))


def external_steps(path: str) -> list[str] | None:
    """The argv prefix that does child_setup's work in the programs the child execs on its way to
    lxc-start (found on `path`), so that subprocess may vfork instead of copying this whole process
    and running Python in the child (~2-3 ms a launch). None while this thread blocks any signal
    (neither program unblocks one, so lxc-start would start with them blocked, where child_setup starts
    it with none) or when either program is missing: child_setup then, as the preexec_fn."""
    if signal.pthread_sigmask(signal.SIG_BLOCK, ()):
        return None
    import shutil  # lazy: the helper runs child_setup only, and shutil costs it ~5 ms a launch

    prefix: list[str] = []
    for program, *args in EXTERNAL_STEPS:
        found = shutil.which(program, path=path)
        if found is None:
            return None
        prefix += [found, *args]
    return prefix


def child_setup() -> None:
    """The `preexec_fn` for subprocess: new session, default signal dispositions, private slave mount
    namespace.

    Runs in the forked child, so it may only raise (subprocess reports it to the parent).
    """
    os.setsid()
    reset_signals()
    isolate_mounts()
