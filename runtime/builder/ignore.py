""".dockerignore: Docker's pattern rules (moby's patternmatcher and ignorefile).

A pattern is Go's filepath.Match syntax (`*` and `?` never match `/`, `[a-z]` classes, `\\` escapes) plus
`**` for any number of directories; a pattern matches a path or any of its parent directories; `!`
re-includes what earlier lines excluded, and the last matching line wins.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from pydock.utils.errors import InvalidArgument

_REGEX_SPECIAL = set(".+()|{}$")


def go_clean(path: str) -> str:
    """Go's filepath.Clean for slash paths (`a//b/../c` -> `a/c`, `` -> `.`)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore: comments and blank lines dropped, each cleaned, a leading `/`
    removed (the context is the root), `!` kept in front."""
    out = []
    for n, line in enumerate(text.splitlines()):
        if n == 0:
            line = line.lstrip("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    kind: str            # exact, prefix, suffix, regex
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regex is not None and self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """One cleaned pattern as patternmatcher compiles it (exact, `x**` prefix, `**x` suffix, or a regex)."""
    out = ["^"]
    kind = "exact"
    i, n = 0, len(text)
    first = True
    while i < n:
        ch = text[i]
        if ch == "*":
            if i + 1 < n and text[i + 1] == "*":
                i += 1
                if i + 1 < n and text[i + 1] == "/":
                    i += 1
                if i + 1 >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(.*/)?")
                    kind = "regex"
                if first:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regex"
        elif ch == "?":
            out.append("[^/]")
            kind = "regex"
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(text[i]))
                kind = "regex"
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regex"
        else:
            out.append(re.escape(ch) if ch in "^" else ch)
        first = False
        i += 1
    regex = None
    if kind == "regex":
        try:
            regex = re.compile("".join(out) + "$", re.DOTALL)
        except re.error as err:
            raise InvalidArgument(f".dockerignore: syntax error in pattern {text!r}: {err}") from None
    return _Pattern(text, exclusion, kind, regex)


class IgnoreMatcher:
    """Decides which context paths the patterns exclude."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise InvalidArgument('.dockerignore: illegal exclusion pattern: "!"')
                p = p[1:]
            self.patterns.append(_compile(go_clean(p), exclusion))
        #: whether some `!` line may re-include a path under an excluded directory
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the context-relative slash path `path` is excluded (moby's MatchesOrParentMatches)."""
        path = go_clean(path)
        if path == ".":
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                for i in range(len(parents)):
                    if pattern.match("/".join(parents[:i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched
