"""`python -m pydock.dockerinit -- lxc-start ARGS...`: the separately shipped helper.

Does exactly what pydock does in-process before launching a container (`preexec.child_setup`:
setsid, private rslave mount namespace), closes every inherited fd above stderr, then execs the
given command. `--version` prints the helper's identity for packagers.
"""

from __future__ import annotations

import os
import sys

USAGE = "You should not invoke dockerinit manually"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        from pydock.utils.version import VERSION  # lazy: not on the launch path

        print(f"pydock dockerinit {VERSION}")
        return 0
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(USAGE, file=sys.stderr)
        return 1
    from pydock.dockerinit.preexec import child_setup  # lazy: after the argument checks, on the launch path only

    try:
        child_setup()
    except OSError as err:
        print(f"dockerinit: {err}", file=sys.stderr)
        return 125
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    try:
        os.execvp(args[0], args)
    except OSError as err:
        print(f"dockerinit: exec {args[0]}: {err}", file=sys.stderr)
        return 127 if isinstance(err, FileNotFoundError) else 126
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
