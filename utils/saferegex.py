"""Regular expressions from untrusted users (the API's `name` filter), matched in linear time.

Python's `re` backtracks: `(a|a)*b` against thirty `a`s takes minutes, and a request thread cannot be
interrupted. Docker matches these filters with Go's RE2, which never backtracks; this is the same idea
on a small scale. The pattern is parsed into the RE2 syntax Docker users write (literals, `.`, classes
with ranges, `\\d \\w \\s` and negations, `^ $ \\A \\z \\b \\B`, groups `( )`, `(?: )`, `(?P<n> )`, a leading
`(?i)`, alternation, `* + ?` and `{m,n}` with lazy forms), compiled to a Thompson NFA and run by
keeping the set of live states: time is O(len(text) * states), states at most MAX_STATES.
Backreferences and lookaround, which RE2 does not have either, are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from pydock.utils.errors import InvalidArgument

MAX_PATTERN = 1000  # characters
MAX_REPEAT = 1000  # the largest {m,n} bound (RE2's)
MAX_STATES = 10_000

Pred = Callable[[str], bool]

_POSIX: dict[str, Pred] = {
    "alpha": str.isalpha, "digit": lambda c: "0" <= c <= "9", "alnum": lambda c: c.isascii() and c.isalnum(),
    "upper": str.isupper, "lower": str.islower, "space": lambda c: c in " \t\n\r\f\v",
    "punct": lambda c: c.isascii() and not c.isalnum() and c.isprintable() and c != " ",
    "xdigit": lambda c: c in "0123456789abcdefABCDEF", "word": lambda c: _is_word(c),
}
_CONTROL = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}


def _is_word(c: str) -> bool:
    return c == "_" or ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z")


_CLASSES: dict[str, Pred] = {"d": lambda c: "0" <= c <= "9", "w": _is_word, "s": lambda c: c in " \t\n\r\f\v"}


# ---- syntax tree ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Char:
    pred: Pred


@dataclass(frozen=True)
class _Assert:
    kind: str  # "bol", "eol", "word", "nonword"


@dataclass(frozen=True)
class _Cat:
    items: tuple


@dataclass(frozen=True)
class _Alt:
    items: tuple


@dataclass(frozen=True)
class _Repeat:
    item: object
    low: int
    high: int | None  # None: unbounded


class _Parser:
    """Recursive descent over the pattern; every error is an InvalidArgument naming the position."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.icase = False
        if pattern.startswith("(?i)"):
            self.icase = True
            self.i = 4

    def fail(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"Invalid regular expression {self.p!r}: {what} at position {self.i}")

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def take(self) -> str:
        c = self.peek()
        if not c:
            raise self.fail("unexpected end")
        self.i += 1
        return c

    def parse(self) -> object:
        node = self.alt()
        if self.i != len(self.p):
            raise self.fail("unbalanced )")
        return node

    def alt(self) -> object:
        items = [self.cat()]
        while self.peek() == "|":
            self.i += 1
            items.append(self.cat())
        return items[0] if len(items) == 1 else _Alt(tuple(items))

    def cat(self) -> object:
        items = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.repeat(self.atom()))
        return _Cat(tuple(items))

    def repeat(self, node: object) -> object:
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                self.i += 1
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{" and self._counted():
                low, high = self._bounds()
            else:
                return node
            if isinstance(node, _Assert):
                raise self.fail("nothing to repeat")
            if self.peek() == "?":  # lazy: the same yes/no answer
                self.i += 1
            if isinstance(node, _Repeat):
                raise self.fail("repeated repetition")
            node = _Repeat(node, low, high)

    def _counted(self) -> bool:
        """Whether `{` starts a {m}, {m,} or {m,n} (otherwise it is a literal brace, as in RE2)."""
        j = self.p.find("}", self.i)
        body = self.p[self.i + 1:j] if j > 0 else ""
        low, _, high = body.partition(",")
        return bool(low.isdigit() and (high == "" or high.isdigit()))

    def _bounds(self) -> tuple[int, int | None]:
        j = self.p.index("}", self.i)
        body = self.p[self.i + 1:j]
        self.i = j + 1
        low_text, comma, high_text = body.partition(",")
        low = int(low_text)
        high = low if not comma else (int(high_text) if high_text else None)
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise self.fail(f"bad repetition {{{body}}} (bounds up to {MAX_REPEAT})")
        return low, high

    def atom(self) -> object:
        c = self.take()
        if c == "(":
            if self.peek() == "?":
                self.i += 1
                if self.peek() == ":":
                    self.i += 1
                elif self.p.startswith("P<", self.i):
                    end = self.p.find(">", self.i)
                    if end < 0:
                        raise self.fail("bad group name")
                    self.i = end + 1
                else:
                    raise self.fail("unsupported group syntax (only (?: ), (?P<name> ) and a leading (?i))")
            node = self.alt()
            if self.take() != ")":
                raise self.fail("missing )")
            return node
        if c == ")":
            raise self.fail("unbalanced )")
        if c == "[":
            return _Char(self._class())
        if c == ".":
            return _Char(lambda ch: ch != "\n")
        if c == "^":
            return _Assert("bol")
        if c == "$":
            return _Assert("eol")
        if c == "\\":
            e = self.take()
            if e in "AbBz":
                return _Assert({"A": "bol", "z": "eol", "b": "word", "B": "nonword"}[e])
            return _Char(self._escape(e))
        if c in "*+?":
            raise self.fail("nothing to repeat")
        return _Char(self._literal(c))

    def _literal(self, c: str) -> Pred:
        if self.icase and c.lower() != c.upper():
            low = c.lower()
            return lambda ch: ch.lower() == low
        return lambda ch: ch == c

    def _escape(self, e: str) -> Pred:
        """The meaning of `\\e` outside or inside a class."""
        if e.lower() in _CLASSES:
            base = _CLASSES[e.lower()]
            return base if e.islower() else (lambda ch: not base(ch))
        if e in _CONTROL:
            return self._literal(_CONTROL[e])
        if e == "x":
            digits = self.p[self.i:self.i + 2]
            if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail("bad \\x escape")
            self.i += 2
            return self._literal(chr(int(digits, 16)))
        if e.isalnum():  # \1 (backreference), \p{...}, \Q... : not supported (RE2 has no backreferences)
            raise self.fail(f"unsupported escape \\{e}")
        return self._literal(e)  # \. \* \\ \[ ... : the character itself

    def _class(self) -> Pred:
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        preds: list[Pred] = []
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            c = self.take()
            if c == "]" and not first:
                break
            first = False
            if c == "[" and self.peek() == ":":
                end = self.p.find(":]", self.i)
                name = self.p[self.i + 1:end] if end > 0 else ""
                if name not in _POSIX:
                    raise self.fail(f"unknown class [:{name}:]")
                preds.append(_POSIX[name])
                self.i = end + 2
                continue
            if c == "\\":
                e = self.take()
                if e.lower() in _CLASSES:
                    preds.append(self._escape(e))
                    continue
                c = _CONTROL.get(e, e)
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.take()
                if hi == "\\":
                    hi = self.take()
                if hi < c:
                    raise self.fail(f"bad range {c}-{hi}")
                ranges.append((c, hi))
            else:
                ranges.append((c, c))
        icase = self.icase

        def member(ch: str) -> bool:
            forms = (ch, ch.lower(), ch.upper()) if icase else (ch,)
            return any(lo <= f <= hi for f in forms for lo, hi in ranges) or any(p(ch) for p in preds)

        return (lambda ch: not member(ch)) if negate else member


# ---- the automaton -----------------------------------------------------------------------------------

class Matcher:
    """A compiled pattern: `search(text)` says whether it matches anywhere in `text`."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise InvalidArgument(f"Invalid regular expression: longer than {MAX_PATTERN} characters")
        self.pattern = pattern
        # a state: ("char", pred, next) | ("split", a, b) | ("assert", kind, next) | ("match",)
        self.states: list[list] = [["match"]]
        self.start = self._emit(_Parser(pattern).parse(), 0)

    def _new(self, state: list) -> int:
        if len(self.states) >= MAX_STATES:
            raise InvalidArgument(f"Invalid regular expression {self.pattern!r}: too complex "
                                  f"(more than {MAX_STATES} states)")
        self.states.append(state)
        return len(self.states) - 1

    def _emit(self, node: object, nxt: int) -> int:
        """Compile `node` so that it continues at state `nxt`; returns its first state."""
        if isinstance(node, _Char):
            return self._new(["char", node.pred, nxt])
        if isinstance(node, _Assert):
            return self._new(["assert", node.kind, nxt])
        if isinstance(node, _Cat):
            for item in reversed(node.items):
                nxt = self._emit(item, nxt)
            return nxt
        if isinstance(node, _Alt):
            starts = [self._emit(item, nxt) for item in node.items]
            first = starts[-1]
            for s in reversed(starts[:-1]):
                first = self._new(["split", s, first])
            return first
        assert isinstance(node, _Repeat)
        if node.high is None:  # x{m,}: m copies, then a loop
            loop = self._new(["split", -1, nxt])
            self.states[loop][1] = self._emit(node.item, loop)
            start = loop
            for _ in range(node.low):
                start = self._emit(node.item, start)
            return start
        start = nxt
        for _ in range(node.high - node.low):  # x{0,k} nested as (x(x(x)?)?)?: each split may skip to the end
            start = self._new(["split", self._emit(node.item, start), nxt])
        for _ in range(node.low):
            start = self._emit(node.item, start)
        return start

    def _closure(self, seeds: list[int], text: str, i: int) -> set[int]:
        """The states reachable from `seeds` at position `i` without consuming a character."""
        out: set[int] = set()
        todo = list(seeds)
        while todo:
            s = todo.pop()
            if s in out:
                continue
            out.add(s)
            st = self.states[s]
            if st[0] == "split":
                todo += (st[1], st[2])
            elif st[0] == "assert" and self._holds(st[1], text, i):
                todo.append(st[2])
        return out

    @staticmethod
    def _holds(kind: str, text: str, i: int) -> bool:
        if kind == "bol":
            return i == 0
        if kind == "eol":
            return i == len(text)
        before = i > 0 and _is_word(text[i - 1])
        after = i < len(text) and _is_word(text[i])
        return (before != after) == (kind == "word")

    def search(self, text: str) -> bool:
        current: set[int] = set()
        for i in range(len(text) + 1):
            current = self._closure([*current, self.start], text, i)  # unanchored: a new try at every i
            if 0 in current:
                return True
            if i == len(text):
                break
            c = text[i]
            current = {st[2] for s in current if (st := self.states[s])[0] == "char" and st[1](c)}
        return False


@functools.lru_cache(maxsize=64)
def compile(pattern: str) -> Matcher:  # noqa: A001 - re's name, on purpose
    """The compiled pattern (InvalidArgument for what it cannot or will not match)."""
    return Matcher(pattern)
