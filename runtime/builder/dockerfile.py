"""Reading a Dockerfile: parser directives, comments, line continuations, then one instruction per logical
line (graph/instructions.py parses each), grouped into build stages. Every syntax error is found here,
before anything is built, and names its line: `dockerfile parse error on line N: ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pydock.graph.instructions import Instruction, parse_instruction
from pydock.utils.errors import InvalidArgument

_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_DIRECTIVES = ("syntax", "escape", "check")


@dataclass(frozen=True)
class Dockerfile:
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """`FROM base [AS name]` and the instructions up to the next FROM."""

    index: int
    base: str                         # as written (meta ARGs substituted when the stage starts)
    name: str | None                  # lower case, as Docker compares stage names
    source: Instruction               # the FROM instruction itself
    commands: tuple[Instruction, ...] = ()

    @property
    def platform(self) -> str | None:
        return self.source.flag("platform")


class _Directives:
    """`# escape=`` ` and friends: only at the very top, each once; the first other line ends them."""

    def __init__(self) -> None:
        self.done = False
        self.seen: set[str] = set()
        self.escape = "\\"

    def check(self, line: str) -> bool:
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _DIRECTIVE.match(line[1:].lstrip())
        if not m or m.group(1).lower() not in _DIRECTIVES:
            self.done = True
            return False
        name, value = m.group(1).lower(), m.group(2)
        if name in self.seen:
            raise InvalidArgument(f"only one {name} parser directive can be used")
        self.seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise InvalidArgument(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        return True  # `syntax` names a BuildKit frontend: the classic builder reads and ignores it


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str | bytes) -> Dockerfile:
    """Every instruction of the Dockerfile `text`, with its line, its text as written (continuations
    joined) and its arguments parsed; InvalidArgument with the line number for anything malformed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    directives = _Directives()
    instructions: list[Instruction] = []
    warnings: list[str] = []
    i = 0

    def processed(raw: str, strip_left: bool, number: int) -> str:
        line = raw.rstrip("\r\n")
        if strip_left:
            line = line.lstrip()
        try:
            directives.check(line)
        except InvalidArgument as err:
            raise InvalidArgument(f"dockerfile parse error on line {number}: {err}") from None
        return "" if _is_comment(line) else line

    while i < len(lines):
        start = i + 1
        line = processed(lines[i], True, start)
        i += 1
        continuation = _continuation(directives.escape)
        joined, more = _trim(line, continuation)
        if not more and not joined:
            continue
        parts = [joined]
        empty_continuation = False
        while more and i < len(lines):
            raw = lines[i]
            line = processed(raw, False, i + 1)
            i += 1
            if _is_comment(raw):
                continue
            if not line.strip():
                empty_continuation = True
                continue
            joined, more = _trim(line, continuation)
            parts.append(joined)
        logical = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {logical.strip()}")
        try:
            instructions.append(parse_instruction(logical, directives.escape, start))
        except InvalidArgument as err:
            raise InvalidArgument(f"dockerfile parse error on line {start}: {err}") from None
    return Dockerfile(tuple(instructions), directives.escape, tuple(warnings))


def _continuation(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")


def _trim(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    """(the line without its continuation token, whether the next line continues it)."""
    if continuation.search(line):
        return continuation.sub(lambda m: m.group(1) or "", line, count=1), True
    return line, False


def stages(df: Dockerfile, target: str | None = None) -> tuple[list[Instruction], list[Stage]]:
    """(the ARGs before the first FROM, the stages up to `target` or all of them)."""
    meta: list[Instruction] = []
    out: list[Stage] = []
    commands: list[Instruction] = []
    names: set[str] = set()
    for inst in df.instructions:
        if inst.keyword == "FROM":
            if out:
                out[-1] = replace(out[-1], commands=tuple(commands))
            commands = []
            name = inst.args[2].lower() if len(inst.args) == 3 else None
            if name is not None:
                if name in names:
                    raise InvalidArgument(f"dockerfile parse error on line {inst.line}: {name} stage name already used")
                names.add(name)
            out.append(Stage(len(out), inst.args[0], name, inst))
        elif not out:
            if inst.keyword != "ARG":
                raise InvalidArgument(f"dockerfile parse error on line {inst.line}: no build stage in current "
                                      "context (the first instruction must be FROM, or an ARG before it)")
            meta.append(inst)
        else:
            commands.append(inst)
    if not out:
        if not df.instructions:
            raise InvalidArgument("the Dockerfile cannot be empty")
        raise InvalidArgument("the Dockerfile has no FROM instruction")
    out[-1] = replace(out[-1], commands=tuple(commands))
    if target:
        for stage in out:
            if stage.name == target.lower():
                return meta, out[:stage.index + 1]
        raise InvalidArgument(f'target stage "{target}" could not be found')
    return meta, out
