"""Network isolation for tests that touch bridges, veths or iptables: a fresh network namespace, plus a
private mount namespace with a sysfs of its own (lxc looks bridges up in /sys/class/net, which belongs
to the namespace that mounted it) that keeps the host's cgroup tree (lxc needs it; plain `ip netns exec`
or `unshare --net` would show the host's interfaces or hide the cgroups)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydock.utils.mount import (CLONE_NEWNET, CLONE_NEWNS, MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC,
                                           MS_NOSUID, MS_REC, make_rslave, mount, umount, unshare)


def enter_private_netns() -> None:
    """Move this (single-threaded) process into a new net + mount namespace, loopback up."""
    unshare(CLONE_NEWNET | CLONE_NEWNS)
    make_rslave("/")
    keep = tempfile.mkdtemp(prefix="pydock-netns-cg-")
    try:
        mount("/sys/fs/cgroup", keep, None, MS_BIND | MS_REC)
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount(keep, "/sys/fs/cgroup", None, MS_BIND | MS_REC)
        umount(keep, MNT_DETACH)
    finally:
        os.rmdir(keep)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def in_netns_argv(*argv: str) -> list[str]:
    """An argv that runs `argv` (exec'd, same environment) inside a fresh namespace of its own."""
    code = (f"import os, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import netns_helpers; netns_helpers.enter_private_netns(); os.execvp(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", code, *argv]
