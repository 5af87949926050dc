"""`import --change`: Dockerfile instructions applied to an image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL), with the Dockerfile's own forms (JSON or shell, `k=v` or `k v`).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from pydock.utils.errors import InvalidArgument

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR", "STOPSIGNAL")


def _json_or_shell(args: str) -> list[str]:
    """`["a", "b"]` as is; anything else as `/bin/sh -c "..."` (the Dockerfile's shell form)."""
    text = args.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(instruction: str, args: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` or the legacy `k v w` (one pair, the rest is the value)."""
    try:
        words = shlex.split(args)
    except ValueError as err:
        raise InvalidArgument(f"{instruction} {args}: {err}") from None
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{instruction} needs a value: {instruction} {args}")
        return [(words[0], args.strip()[len(words[0]):].strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{instruction}: {word!r} is not key=value")
        out.append((key, value))
    return out


def apply_changes(config: dict[str, Any] | None, changes: list[str]) -> dict[str, Any] | None:
    """`config` with each instruction of `changes` applied in order (None stays None without changes)."""
    if not changes:
        return config
    cfg: dict[str, Any] = dict(config or {})
    for change in changes:
        instruction, _, args = change.strip().partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        if instruction not in SUPPORTED:
            raise InvalidArgument(f"--change {change!r}: {instruction or 'an empty line'} is not supported "
                                  f"(only {', '.join(SUPPORTED)})")
        if not args:
            raise InvalidArgument(f"--change {change!r}: {instruction} needs an argument")
        if instruction in ("CMD", "ENTRYPOINT"):
            cfg["Cmd" if instruction == "CMD" else "Entrypoint"] = _json_or_shell(args)
        elif instruction == "ENV":
            env = [e for e in cfg.get("Env") or []]
            for key, value in _pairs(instruction, args):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif instruction == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(instruction, args))
            cfg["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for port in args.split():
                number, _, proto = port.partition("/")
                if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                    raise InvalidArgument(f"EXPOSE {port}: not PORT[/tcp|udp|sctp]")
                ports[f"{int(number)}/{proto or 'tcp'}"] = {}
            cfg["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            volumes = dict(cfg.get("Volumes") or {})
            paths = _json_or_shell(args) if args.startswith("[") else args.split()
            if paths[:2] == ["/bin/sh", "-c"]:
                paths = args.split()
            for path in paths:
                if not path.startswith("/"):
                    raise InvalidArgument(f"VOLUME {path}: the path must be absolute")
                volumes[path] = {}
            cfg["Volumes"] = volumes
        elif instruction == "WORKDIR":
            if not args.startswith("/"):
                raise InvalidArgument(f"WORKDIR {args}: the path must be absolute")
            cfg["WorkingDir"] = args
        elif instruction == "USER":
            cfg["User"] = args
        else:
            cfg["StopSignal"] = args
    return cfg
