"""What a linked child looks like from inside its parent: Docker 0.7's `<ALIAS>_*` env vars and an /etc/hosts line.

Differences from Docker 0.7 (on purpose): an alias is upper-cased AND every character that cannot appear
in a shell variable name (`-`, `.`) becomes `_` (later Docker did this for `-`); child env values that
contain `=` are kept (Docker 0.7 silently dropped them because it split on every `=`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydock.links.ports import Port, parse_ports

# Set by the image/launcher rather than by the user: not worth re-exporting to a parent.
SKIPPED_CHILD_ENV = frozenset({"HOME", "PATH"})


def env_prefix(alias: str) -> str:
    """`db` -> `DB`, `my-db.1` -> `MY_DB_1`."""
    return re.sub(r"[^A-Z0-9_]", "_", alias.upper())


def default_port(ports: Iterable[Port]) -> Port | None:
    """The port `<ALIAS>_PORT` points at: the lowest number, tcp winning ties (Docker's ascending sort)."""
    ordered = sorted(ports, key=lambda p: (p.number, p.proto != "tcp", p.proto))
    return ordered[0] if ordered else None


def link_env(alias: str, name_path: str, child_ip: str,
             exposed_ports: Iterable[str | int | Port] | Mapping[str, object] | None,
             child_env: Iterable[str] | None) -> list[str]:
    """`K=V` lines for one link, in Docker 0.7's order: _PORT, per-port vars, _NAME, _ENV_*."""
    prefix = env_prefix(alias)
    ports = parse_ports(exposed_ports)
    env: list[str] = []
    default = default_port(ports)
    if default is not None:
        env.append(f"{prefix}_PORT={default.proto}://{child_ip}:{default.number}")
    for p in sorted(ports, key=lambda p: (p.number, p.proto != "tcp", p.proto)):
        key = f"{prefix}_PORT_{p.number}_{p.proto.upper()}"
        env.append(f"{key}={p.proto}://{child_ip}:{p.number}")
        env.append(f"{key}_ADDR={child_ip}")
        env.append(f"{key}_PORT={p.number}")
        env.append(f"{key}_PROTO={p.proto}")
    env.append(f"{prefix}_NAME={name_path}")
    for entry in child_env or ():
        key, sep, value = entry.partition("=")
        if not sep or not key or key in SKIPPED_CHILD_ENV:
            continue
        env.append(f"{prefix}_ENV_{key}={value}")
    return env


def hosts_entry(alias: str, ip: str) -> str:
    """The /etc/hosts line that lets the parent reach the child by its alias."""
    return f"{ip}\t{alias}"
