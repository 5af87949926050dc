"""A tiny static C program the confinement tests run inside containers (busybox has no way to make
an arbitrary syscall): `probe WHAT [PATH]` prints `ok` or `errno=N` for one attempt."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long r = -1;
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "handle") && argc > 2) {
        /* the "Shocker" escape: a handle for a file of the host filesystem, reopened by handle */
        struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
        int mount_id, fd = open(argv[2], O_RDONLY);
        h->handle_bytes = MAX_HANDLE_SZ;
        if (fd < 0 || name_to_handle_at(AT_FDCWD, argv[2], h, &mount_id, 0) < 0) {
            printf("setup errno=%d\n", errno);
            return 3;
        }
        r = open_by_handle_at(fd, h, O_RDONLY);
    } else if (!strcmp(argv[1], "unshare-user")) {
        r = unshare(CLONE_NEWUSER);
    } else if (!strcmp(argv[1], "keyctl")) {
        r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session keyring */, 1);
    } else if (!strcmp(argv[1], "add_key")) {
        r = syscall(SYS_add_key, "user", "pydock-probe", "x", 1, -3);
    } else if (!strcmp(argv[1], "mkdir") && argc > 2) {
        r = mkdir(argv[2], 0755);
    } else {
        return 2;
    }
    if (r < 0) printf("errno=%d\n", errno); else printf("ok\n");
    return 0;
}
"""


def build_probe(directory: Path) -> Path:
    """Compile the probe statically into `directory` (gcc and libc6-dev: hack/make.sh installs them)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise AssertionError("gcc is needed to build the confinement probe (hack/make.sh installs it)")
    src = directory / "probe.c"
    src.write_text(SOURCE)
    out = directory / "probe"
    subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(src)], check=True, capture_output=True)
    return out
