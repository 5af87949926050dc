"""What confines a container besides its namespaces and Docker's capabilities (caps.py): Docker's
`--security-opt` values, checked at create, stored in HostConfig.SecurityOpt as Docker stores them,
and read back at each start as no_new_privs and the seccomp policy lxc loads.

Accepted, as Docker spells them: `no-new-privileges[:true|:false|=true|=false]`,
`seccomp=unconfined`, `seccomp=builtin`, and `seccomp=<profile JSON>` (the Docker CLI, like
`pydock run`, reads `seccomp=PATH` and sends the file's content). Anything else is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydock.runtime import caps, seccomp


@dataclass(frozen=True)
class Confinement:
    """A container's security options, parsed."""

    no_new_privileges: bool = False
    #: None: unconfined; else the Docker-format profile (Docker's default unless the user gave one)
    seccomp_profile: dict[str, Any] | None = None


def _split(value: str) -> tuple[str, str | None]:
    """`key=value` or the older `key:value` (Docker accepts both); (key, None) for a bare key."""
    for sep in ("=", ":"):
        key, found, rest = value.partition(sep)
        if found and key in ("seccomp", "no-new-privileges"):
            return key, rest
    return value, None


def parse(values: Iterable[str] | None, *, privileged: bool = False) -> Confinement:
    """HostConfig.SecurityOpt -> Confinement; InvalidArgument naming the first value pydock can't honour.
    A privileged container runs without seccomp whatever profile it names (as under Docker);
    no-new-privileges stays as asked."""
    nnp = False
    profile: dict[str, Any] | None = seccomp.default_profile()
    for value in values or ():
        if not isinstance(value, str):
            raise seccomp.refused(f"Invalid --security-opt: {value!r}")
        key, arg = _split(value)
        if key == "no-new-privileges":
            if arg not in (None, "true", "false"):
                raise seccomp.refused(f"Invalid --security-opt: {value!r} (no-new-privileges takes true or false)")
            nnp = arg != "false"
        elif key == "seccomp" and arg:
            if arg == "unconfined":
                profile = None
            elif arg == "builtin":
                profile = seccomp.default_profile()
            else:
                profile = seccomp.load_profile(arg, "(--security-opt seccomp)")
        else:
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise seccomp.refused(f"Unsupported --security-opt: {shown!r} (pydock supports no-new-privileges, "
                                  "seccomp=unconfined and seccomp=PROFILE.json)")
    return Confinement(nnp, None if privileged else profile)


def read_profile_files(values: Iterable[str]) -> list[str]:
    """The CLI's side of `--security-opt seccomp=PATH`: read the file and send its content (compacted
    JSON, as the Docker CLI does); every other value is passed through for `parse` to judge."""
    out = []
    for value in values:
        key, arg = _split(value)
        if key == "seccomp" and arg and arg not in ("unconfined", "builtin"):
            try:
                with open(arg, "rb") as f:
                    text = f.read(seccomp.MAX_PROFILE_BYTES + 1)
            except OSError as err:
                raise seccomp.refused(f"opening seccomp profile ({arg}) failed: {err.strerror}") from None
            profile = seccomp.load_profile(text, f"({arg})")
            value = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(value)
    return out


def lxc_policy(conf: Confinement, held: tuple[str, ...] = caps.DEFAULT_CAPS) -> str | None:
    """The text of the seccomp policy lxc loads for a container holding capabilities `held` (Docker's
    profile allows some syscalls only with a capability), or None when unconfined."""
    if conf.seccomp_profile is None:
        return None
    return seccomp.to_lxc(conf.seccomp_profile, held)
