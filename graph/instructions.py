"""Dockerfile instructions, one grammar for `build` and for `import`/`commit --change`.

`parse_instruction` splits one logical line (continuations already joined) into keyword, `--flags` and
arguments with each instruction's own rules (Docker's parser: the JSON exec form or the shell form,
`k=v` pairs or the legacy `k v`, words, HEALTHCHECK's type, ONBUILD's nested instruction) and checks
what Docker checks before a build starts. `apply_config` is what the config-only instructions do to an
image config (Docker's dispatchers); `expand` does the variable substitution between the two
(shellwords.py), with the build's variables or, for `apply_changes` (`--change`), the image's Env.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydock.graph.shellwords import env_map, expand_word, expand_words
from pydock.utils.errors import InvalidArgument
from pydock.utils.signals import parse_signal

#: every instruction Docker knows.
KEYWORDS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
            "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
#: what `--change` accepts (moby's validCommitCommands).
SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
             "VOLUME", "WORKDIR")
#: instructions that only change the config (the builder commits them without running anything).
CONFIG_ONLY = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "SHELL", "STOPSIGNAL",
               "USER", "VOLUME")
DEFAULT_SHELL = ("/bin/sh", "-c")

#: flags each instruction takes; the classic builder refuses BuildKit's with Docker's own message.
_FLAGS: dict[str, tuple[str, ...]] = {
    "ADD": ("chown", "chmod"), "COPY": ("from", "chown", "chmod"), "FROM": ("platform",),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
_BUILDKIT_FLAGS = {"ADD": ("link", "keep-git-dir", "checksum", "unpack", "exclude"),
                   "COPY": ("link", "parents", "exclude"), "RUN": ("mount", "network", "security", "device")}
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
                "h": 3_600_000_000_000}


@dataclass(frozen=True)
class Instruction:
    """One parsed instruction; `args` are raw (quotes and `$VAR` still in them) except in JSON form."""

    keyword: str                                    # upper case: RUN, COPY...
    args: tuple[str, ...] = ()                      # per the keyword's grammar
    flags: tuple[tuple[str, str], ...] = ()         # (name, value) of `--name=value`
    json: bool = False                              # exec (JSON array) form
    pairs: tuple[tuple[str, str], ...] = ()         # ENV, LABEL: (key, value)
    original: str = ""                              # as written (continuations joined): what `Step N/M` shows
    line: int = 0                                   # its first line in the Dockerfile (0: not from a file)
    trigger: str = ""                               # ONBUILD: the instruction to run when used as a base
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # HEALTHCHECK's parsed config

    def flag(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.flags:
            if key == name:
                return value
        return default


# ---- words ------------------------------------------------------------------------------------------------

def parse_words(rest: str, escape: str = "\\") -> list[str]:
    """Split at whitespace outside quotes, keeping quotes and escapes in the words (Docker's parseWords:
    substitution removes them later)."""
    words: list[str] = []
    buf: list[str] = []
    blank_ok = in_word = False
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not quote and ch.isspace():
            if in_word and (blank_ok or buf):
                words.append("".join(buf))
            buf, blank_ok, in_word = [], False, False
            i += 1
            continue
        in_word = True
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote, blank_ok = ch, True
        elif ch == escape and quote != "'":
            if i + 1 == n:
                break  # an escape at the very end is dropped
            buf.append(ch)
            i += 1
            ch = rest[i]
        buf.append(ch)
        i += 1
    if in_word and (blank_ok or buf):
        words.append("".join(buf))
    return words


def parse_json_array(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None when `rest` is not one (a non-string element is an error)."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise InvalidArgument("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _extract_flags(rest: str, escape: str) -> tuple[list[str], str]:
    """The leading `--flag[=value]` words and what follows them (Docker's extractBuilderFlags)."""
    flags: list[str] = []
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i].isspace():
            i += 1
        if i >= n or not rest.startswith("--", i):
            return flags, rest[i:]
        word: list[str] = []
        quote = ""
        blank_ok = False
        while i < n:
            ch = rest[i]
            if quote:
                if ch == quote:
                    quote = ""
                    i += 1
                    continue
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote, blank_ok = ch, True
                i += 1
                continue
            if ch == escape:
                if i + 1 == n:
                    i += 1
                    continue
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
        text = "".join(word)
        if text == "--":
            return flags, rest[i:]
        if text or blank_ok:
            flags.append(text)


def _parse_flags(keyword: str, words: list[str]) -> tuple[tuple[str, str], ...]:
    """`--name=value` words checked against what `keyword` takes (BFlags' rules and messages)."""
    allowed = _FLAGS.get(keyword, ())
    out: dict[str, str] = {}
    for word in words:
        if not word.startswith("--"):
            raise InvalidArgument(f"Arg should start with -- : {word}")
        name, eq, value = word[2:].partition("=")
        if name in _BUILDKIT_FLAGS.get(keyword, ()):
            raise InvalidArgument(f"the --{name} option requires BuildKit, which pydock's classic builder is not")
        if name not in allowed:
            raise InvalidArgument(f"Unknown flag: {name}")
        if name in out:
            raise InvalidArgument(f"Duplicate flag specified: {name}")
        if not eq:
            raise InvalidArgument(f"Missing a value on flag: {name}")
        out[name] = value
    return tuple(out.items())


def split_command(line: str, escape: str = "\\") -> tuple[str, list[str], str]:
    """(keyword as written, flag words, the rest) of one logical line."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    flags, rest = _extract_flags(parts[1], escape)
    return parts[0], flags, rest.strip()


# ---- instructions -----------------------------------------------------------------------------------------

def parse_instruction(text: str, escape: str = "\\", line: int = 0) -> Instruction:
    """One instruction (`RUN make`, `COPY --from=build /out /app`) checked as Docker checks it before
    building; InvalidArgument says what is wrong (the caller adds where)."""
    word, flag_words, rest = split_command(text, escape)
    keyword = word.upper()
    if keyword not in KEYWORDS:
        raise InvalidArgument(f"unknown instruction: {word}")
    flags = _parse_flags(keyword, flag_words)
    base = Instruction(keyword, flags=flags, original=text.strip(), line=line)
    if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        return _exec_or_shell(base, rest)
    if keyword in ("ADD", "COPY", "VOLUME"):
        listed = parse_json_array(rest)
        args = listed if listed is not None else _split(rest)
        inst = replace(base, args=tuple(args), json=listed is not None)
        if keyword == "VOLUME":
            if not args:
                raise InvalidArgument("VOLUME requires at least one argument")
            if any(not a.strip() for a in args):
                raise InvalidArgument("VOLUME specified can not be an empty string")
        elif len(args) < 2:
            raise InvalidArgument(f"{keyword} requires at least two arguments, but only one was provided. "
                                  "Destination could not be determined")
        return inst
    if keyword in ("ENV", "LABEL"):
        return replace(base, pairs=tuple(_name_values(keyword, rest, escape)))
    if keyword == "ARG":
        words = parse_words(rest, escape)
        if not words:
            raise InvalidArgument("ARG requires at least one argument")
        for w in words:
            if w.startswith("="):
                raise InvalidArgument("ARG names can not be blank")
        return replace(base, args=tuple(words))
    if keyword in ("EXPOSE", "FROM"):
        args = _split(rest)
        if keyword == "EXPOSE" and not args:
            raise InvalidArgument("EXPOSE requires at least one argument")
        if keyword == "FROM":
            _check_from(args)
        return replace(base, args=tuple(args))
    if keyword in ("MAINTAINER", "STOPSIGNAL", "USER", "WORKDIR"):
        if not rest:
            raise InvalidArgument(f"{keyword} requires exactly one argument")
        return replace(base, args=(rest,))
    if keyword == "HEALTHCHECK":
        return _healthcheck(base, rest)
    return _onbuild(base, rest, escape)


def _split(rest: str) -> list[str]:
    return [w for w in _WHITESPACE.split(rest) if w] if rest else []


def _exec_or_shell(base: Instruction, rest: str) -> Instruction:
    listed = parse_json_array(rest)
    if listed is not None:
        if base.keyword == "SHELL" and not listed:
            raise InvalidArgument("SHELL requires at least one argument")
        return replace(base, args=tuple(listed), json=True)
    if base.keyword == "SHELL":
        if not rest:
            raise InvalidArgument("SHELL requires at least one argument")
        raise InvalidArgument(f"SHELL requires the arguments to be in JSON form: {base.original}")
    if base.keyword == "RUN" and not rest:
        raise InvalidArgument("RUN requires at least one argument")
    return replace(base, args=(rest,) if rest else ())


def _name_values(keyword: str, rest: str, escape: str) -> list[tuple[str, str]]:
    """ENV/LABEL: `k=v k2="v 2"`, or the legacy `k v w` (the rest of the line is the value)."""
    words = parse_words(rest, escape)
    if not words:
        raise InvalidArgument(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise InvalidArgument(f"{keyword} must have two arguments")
        return [(parts[0], parts[1])]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise InvalidArgument(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        if not key:
            raise InvalidArgument(f"{keyword} names can not be blank")
        out.append((key, value))
    return out


def _check_from(args: list[str]) -> None:
    if len(args) == 3 and args[1].lower() == "as":
        if not _STAGE_NAME.match(args[2].lower()):
            raise InvalidArgument(f"invalid name for build stage: {args[2]!r}, name can't start with a number "
                                  "or contain symbols")
    elif len(args) != 1:
        raise InvalidArgument("FROM requires either one or three arguments")


def _healthcheck(base: Instruction, rest: str) -> Instruction:
    parts = rest.split(None, 1)
    if not parts:
        raise InvalidArgument("HEALTHCHECK requires at least one argument")
    kind = parts[0].upper()
    tail = parts[1] if len(parts) > 1 else ""
    if kind == "NONE":
        if tail or base.flags:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        return replace(base, args=("NONE",), extra={"Test": ["NONE"]})
    if kind != "CMD":
        raise InvalidArgument(f'Unknown type "{parts[0]}" in HEALTHCHECK (try CMD)')
    cmd = _exec_or_shell(replace(base, keyword="CMD"), tail)
    if not cmd.args:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    check: dict[str, Any] = {"Test": ["CMD" if cmd.json else "CMD-SHELL", *cmd.args]}
    for name, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        value = base.flag(name)
        if value:
            check[key] = parse_duration(value, name)
    retries = base.flag("retries")
    if retries:
        if not re.fullmatch(r"-?\d+", retries):
            raise InvalidArgument(f"--retries {retries!r} is not an integer")
        if int(retries) < 0:
            raise InvalidArgument(f"--retries cannot be negative ({retries})")
        check["Retries"] = int(retries)
    return replace(base, args=("CMD", *cmd.args), json=cmd.json, extra=check)


def parse_duration(text: str, name: str) -> int:
    """Go's time.ParseDuration (`30s`, `1m30s`, `1.5h`) in nanoseconds; at least 1ms unless zero."""
    pos, total = 0, 0.0
    if text in ("0", ""):
        return 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise InvalidArgument(f"--{name}: invalid duration {text!r}")
    if 0 < total < 1_000_000:
        raise InvalidArgument(f'Interval "{name}" cannot be less than 1ms')
    return int(total)


def _onbuild(base: Instruction, rest: str, escape: str) -> Instruction:
    if not rest:
        raise InvalidArgument("ONBUILD requires at least one argument")
    inner = rest.split(None, 1)[0].upper()
    if inner == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner in ("MAINTAINER", "FROM"):
        raise InvalidArgument(f"{inner} isn't allowed as an ONBUILD trigger")
    parse_instruction(rest, escape)  # a trigger that could never run is refused now
    trigger = re.sub(r"(?i)^\s*ONBUILD\s*", "", base.original)
    return replace(base, args=(rest,), trigger=trigger)


# ---- the config -------------------------------------------------------------------------------------------

def command_line(inst: Instruction, config: dict[str, Any]) -> list[str]:
    """RUN/CMD/ENTRYPOINT's argv: the JSON form as is, the shell form behind the config's SHELL."""
    if inst.json:
        return list(inst.args)
    if not inst.args:
        return []
    return [*(config.get("Shell") or DEFAULT_SHELL), inst.args[0]]


def normalize_workdir(current: str, requested: str) -> str:
    """WORKDIR: an absolute path as given, a relative one on top of the current one; cleaned."""
    path = requested if requested.startswith("/") else posixpath.join("/", current or "/", requested)
    return posixpath.normpath(path).replace("//", "/")


def check_signal(text: str) -> str:
    """STOPSIGNAL's value, kept as written, when it names a signal (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`)."""
    parse_signal(text)
    return text


def expose_ports(specs: list[str]) -> list[str]:
    """EXPOSE's `port[/proto]`, ranges (`7000-7002`) and `[ip:]host:container` forms as `N/proto` keys."""
    out = []
    for spec in specs:
        container = spec.rsplit(":", 1)[-1]
        port, _, proto = container.partition("/")
        proto = (proto or "tcp").lower()
        if not port:
            raise InvalidArgument(f"no port specified: {spec}<empty>")
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        low, dash, high = port.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise InvalidArgument(f"invalid containerPort: {port}")
        first, last = int(low), int(high) if dash else int(low)
        if not 0 < first <= last < 65536:
            raise InvalidArgument(f"invalid containerPort: {port}")
        out.extend(f"{p}/{proto}" for p in range(first, last + 1))
    return out


def set_env(env: list[str] | None, key: str, value: str) -> list[str]:
    """`env` with `key` set to `value` in place (or appended), as ENV does."""
    out = list(env or [])
    for i, item in enumerate(out):
        if item.split("=", 1)[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


def apply_config(cfg: dict[str, Any], inst: Instruction, cmd_set: bool = False) -> dict[str, Any]:
    """A copy of image config `cfg` with config instruction `inst` (arguments already substituted) applied.
    `cmd_set`: a CMD came earlier in this build stage, so ENTRYPOINT keeps it (else it clears Cmd)."""
    out = dict(cfg)
    kw = inst.keyword
    if kw == "CMD":
        out["Cmd"] = command_line(inst, cfg) or None
    elif kw == "ENTRYPOINT":
        out["Entrypoint"] = command_line(inst, cfg) or None
        if not cmd_set:
            out["Cmd"] = None
    elif kw == "ENV":
        env = out.get("Env")
        for key, value in inst.pairs:
            env = set_env(env, key, value)
        out["Env"] = env
    elif kw == "LABEL":
        out["Labels"] = {**(out.get("Labels") or {}), **dict(inst.pairs)}
    elif kw == "EXPOSE":
        out["ExposedPorts"] = {**(out.get("ExposedPorts") or {}), **{p: {} for p in expose_ports(list(inst.args))}}
    elif kw == "VOLUME":
        volumes = dict(out.get("Volumes") or {})
        for path in inst.args:
            if not path.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            volumes[path] = {}
        out["Volumes"] = volumes
    elif kw == "WORKDIR":
        out["WorkingDir"] = normalize_workdir(out.get("WorkingDir") or "", inst.args[0])
    elif kw == "USER":
        out["User"] = inst.args[0]
    elif kw == "STOPSIGNAL":
        out["StopSignal"] = check_signal(inst.args[0])
    elif kw == "HEALTHCHECK":
        out["Healthcheck"] = dict(inst.extra)
    elif kw == "ONBUILD":
        out["OnBuild"] = [*(out.get("OnBuild") or []), inst.trigger]
    elif kw == "SHELL":
        out["Shell"] = list(inst.args)
    else:
        raise InvalidArgument(f"{kw} does not change an image config")
    return out


def expand(inst: Instruction, env: Mapping[str, str], escape: str = "\\") -> Instruction:
    """`inst` with Docker's variable substitution done in the words it applies to (ENV and LABEL keys and
    values, ADD/COPY paths and --chown/--chmod, VOLUME, WORKDIR, USER, STOPSIGNAL; EXPOSE word-splits).
    RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD are left to the shell (or to the later build)."""
    kw = inst.keyword
    if kw in ("ENV", "LABEL"):
        return replace(inst, pairs=tuple((expand_word(k, env, escape), expand_word(v, env, escape))
                                         for k, v in inst.pairs))
    if kw in ("ADD", "COPY"):
        flags = tuple((k, expand_word(v, env, escape) if k in ("chown", "chmod") else v) for k, v in inst.flags)
        return replace(inst, args=tuple(expand_word(a, env, escape) for a in inst.args), flags=flags)
    if kw in ("VOLUME", "WORKDIR", "USER", "STOPSIGNAL"):
        return replace(inst, args=tuple(expand_word(a, env, escape) for a in inst.args))
    if kw == "EXPOSE":
        return replace(inst, args=tuple(w for a in inst.args for w in expand_words(a, env, escape)))
    return inst


def apply_changes(config: dict[str, Any] | None, changes: list[str]) -> dict[str, Any] | None:
    """`--change`: `config` with each instruction applied in order, its variables substituted from the
    config's Env as Docker's commit does (None stays None without changes)."""
    if not changes:
        return config
    cfg: dict[str, Any] = dict(config or {})
    cmd_set = False
    for change in changes:
        keyword = change.strip().split(None, 1)[0].upper() if change.strip() else ""
        if keyword not in SUPPORTED:
            raise InvalidArgument(f"--change {change!r}: {keyword or 'an empty line'} is not supported "
                                  f"(only {', '.join(SUPPORTED)})")
        try:
            inst = expand(parse_instruction(change), env_map(cfg.get("Env")))
            cfg = apply_config(cfg, inst, cmd_set)
        except InvalidArgument as err:
            raise InvalidArgument(f"--change {change!r}: {err}") from None
        cmd_set = cmd_set or keyword == "CMD"
    return cfg
