"""Resolve `-u user[:group]` against the container's own /etc/passwd and /etc/group, read as text.

Never NSS or the `pwd` module: those read the host's databases, not the container's. The files come
from the image, so they are read like any hostile input: resolved inside the rootfs, regular files
only (a fifo would hang the start, /dev/zero never ends), at most MAX_DB_SIZE bytes.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path

from pydock.utils.errors import LaunchError
from pydock.utils.humanize import human_size
from pydock.utils.safepath import read_in_root

log = logging.getLogger(__package__)

#: larger than any real passwd/group (100 000 users are ~6 MiB); bigger ones are refused, not read.
MAX_DB_SIZE = 16 << 20


@dataclass(frozen=True)
class User:
    """Who the container's command runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"
    name: str = ""


ROOT = User(0, 0, (), "/root", "root")


def _read_db(rootfs: Path, name: str) -> list[list[str]]:
    """The rows of /etc/`name` in the rootfs; none when it is missing (then only numeric ids and root
    resolve). LaunchError when it exists but is not something to read: a fifo, a device, a directory,
    a symlink loop, or larger than MAX_DB_SIZE."""
    path = f"/etc/{name}"
    try:
        data = read_in_root(rootfs, path, MAX_DB_SIZE)
    except FileNotFoundError:
        log.debug("the container has no %s: only numeric ids and root resolve", path)
        return []
    except OSError as err:
        if err.errno == errno.EFBIG:
            reason = f"larger than {human_size(MAX_DB_SIZE)}"
        elif err.errno == errno.EINVAL:
            reason = err.strerror
        elif err.errno == errno.ENOTDIR:
            log.debug("%s: a non-directory on the way; the container has none", path)
            return []
        else:
            reason = err.strerror or str(err)
        raise LaunchError(f"Cannot read {path} in the container: {reason}") from None
    text = data.decode("utf-8", "replace")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


#: the largest uid or gid the kernel takes (2^32 - 1 is the "no id" value)
MAX_ID = (1 << 31) - 1


def _is_id(spec: str) -> bool:
    """A numeric uid or gid the kernel accepts."""
    if not spec.isdigit() or not spec.isascii():
        return False
    if int(spec) > MAX_ID:
        raise LaunchError(f"uids and gids must be in range 0-{MAX_ID}: {spec}")
    return True


def _find_group(groups: list[list[str]], spec: str) -> int | None:
    for row in groups:
        if len(row) >= 3 and (row[0] == spec or row[2] == spec):
            try:
                return int(row[2])
            except ValueError:
                continue
    return int(spec) if _is_id(spec) else None


def add_groups(rootfs: Path, user: User, extra: tuple[str, ...] | list[str]) -> User:
    """`user` with the `--group-add` groups as supplementary ones: names looked up in the container's
    /etc/group, numbers taken as gids (as Docker does)."""
    if not extra:
        return user
    groups = _read_db(rootfs, "group")
    added = list(user.groups)
    for spec in extra:
        gid = _find_group(groups, spec)
        if gid is None:
            raise LaunchError(f"Unable to find group {spec}")
        if gid not in added:
            added.append(gid)
    return User(user.uid, user.gid, tuple(added), user.home, user.name)


def resolve_user(rootfs: Path, spec: str | None) -> User:
    """`name`, `uid`, `name:group` or `uid:gid` -> User with supplementary groups from /etc/group.

    A name missing from the container's passwd raises LaunchError("Unable to find user X"); a uid
    missing from it runs as that uid with gid 0 and home `/`, as Docker does (so do a gid missing from
    /etc/group and a group name that is not there is an error); an empty spec means root.
    """
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    passwd = _read_db(rootfs, "passwd")
    groups = _read_db(rootfs, "group")
    entry = None
    for row in passwd:
        if len(row) >= 4 and (row[0] == user_part or row[2] == user_part):
            entry = row
            break
    if entry is None:
        if user_part == "0" or user_part == "root":
            entry = ["root", "x", "0", "0", "", "/root"]
        elif _is_id(user_part):
            entry = ["", "x", user_part, "0", "", "/"]
        else:
            raise LaunchError(f"Unable to find user {user_part}")
    try:
        uid, gid = int(entry[2]), int(entry[3])
    except ValueError:
        raise LaunchError(f"Unable to find user {user_part}: bad passwd entry") from None
    if group_part:
        found = _find_group(groups, group_part)
        if found is None:
            raise LaunchError(f"Unable to find group {group_part}")
        gid = found
    name = entry[0]
    supplementary = []
    for row in groups if name else ():
        if len(row) >= 4 and name in row[3].split(","):
            try:
                g = int(row[2])
            except ValueError:
                continue
            if g != gid and g not in supplementary:
                supplementary.append(g)
    home = entry[5] if len(entry) > 5 and entry[5] else "/"
    return User(uid, gid, tuple(supplementary), home, name)
