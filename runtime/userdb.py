"""Resolve `-u user[:group]` against the container's own /etc/passwd and /etc/group, read as text.

Never NSS or the `pwd` module: those read the host's databases, not the container's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydock.utils.errors import LaunchError
from pydock.runtime.rootpath import resolve_in_root


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
    try:
        text = resolve_in_root(rootfs, f"/etc/{name}").read_text(errors="replace")
    except (OSError, ValueError):
        return []
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _find_group(groups: list[list[str]], spec: str) -> int | None:
    for row in groups:
        if len(row) >= 3 and (row[0] == spec or row[2] == spec):
            try:
                return int(row[2])
            except ValueError:
                continue
    return int(spec) if spec.isdigit() else None


def resolve_user(rootfs: Path, spec: str | None) -> User:
    """`name`, `uid`, `name:group` or `uid:gid` -> User with supplementary groups from /etc/group.

    A name (or uid) missing from the container's passwd raises LaunchError("Unable to find user X"),
    like Docker 0.7's dockerinit; an empty spec means root.
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
    for row in groups:
        if len(row) >= 4 and name in row[3].split(","):
            try:
                g = int(row[2])
            except ValueError:
                continue
            if g != gid and g not in supplementary:
                supplementary.append(g)
    home = entry[5] if len(entry) > 5 and entry[5] else "/"
    return User(uid, gid, tuple(supplementary), home, name)
