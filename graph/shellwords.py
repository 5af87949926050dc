"""Docker's variable substitution in Dockerfile words: quotes, escapes, `$VAR`, `${VAR}`, `${VAR:-x}`,
`${VAR-x}`, `${VAR:+x}`, `${VAR+x}`, `${VAR:?msg}`, `${VAR#pat}`, `${VAR%pat}`, `${VAR/pat/repl}`.

The same rules as the shell lexer of Docker's builder: `expand_word` keeps the spaces of the result
(ENV, COPY, WORKDIR...), `expand_words` splits it into words after substitution (EXPOSE). Used by the
builder and by `--change` (which substitutes with the image's Env, as Docker's commit does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydock.utils.errors import InvalidArgument

_SPECIAL = "@*#?-$!0"


class _Words:
    """The words of a result, split at unquoted whitespace."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf: list[str] = []
        self.in_word = False

    def char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.raw_char(ch)

    def raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def string(self, text: str) -> None:
        for ch in text:
            self.char(ch)

    def raw_string(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def done(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf = []
        return self.words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_escapes = False

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def until(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to `stop` (consumed) or the end: (the result, its words)."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            result: list[str] = []
            words = _Words()
            while self.peek() is not None:
                ch = self.peek()
                if stop is not None and ch == stop:
                    self.next()
                    return "".join(result), words.done()
                if ch == "$":
                    tmp = self.dollar()
                    result.append(tmp)
                    words.string(tmp)
                elif ch == "'":
                    tmp = self.single_quoted()
                    result.append(tmp)
                    words.raw_string(tmp)
                elif ch == '"':
                    tmp = self.double_quoted()
                    result.append(tmp)
                    words.raw_string(tmp)
                else:
                    ch = self.next()
                    if ch == self.escape:
                        if self.raw_escapes:
                            words.raw_char(ch)
                            result.append(ch)
                        ch = self.next()
                        if ch is None:
                            break
                        words.raw_char(ch)
                    else:
                        words.char(ch)  # type: ignore[arg-type]
                    result.append(ch)  # type: ignore[arg-type]
            if stop is not None:
                raise InvalidArgument(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.done()
        finally:
            self.raw_escapes = saved

    def single_quoted(self) -> str:
        self.next()
        out = []
        while True:
            ch = self.next()
            if ch is None:
                raise InvalidArgument("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        self.next()
        out = []
        while True:
            ch = self.peek()
            if ch is None:
                raise InvalidArgument("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                after = self.peek()
                if after is None:
                    continue
                if after in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)  # type: ignore[arg-type]

    def name(self) -> str:
        first = self.peek()
        if first is None:
            return ""
        if first.isdigit():
            out = []
            while self.peek() is not None and self.peek().isdigit():  # type: ignore[union-attr]
                out.append(self.next())
            return "".join(out)  # type: ignore[arg-type]
        if first in _SPECIAL:
            return self.next()  # type: ignore[return-value]
        out = []
        while self.peek() is not None and (self.peek().isalnum() or self.peek() == "_"):  # type: ignore[union-attr]
            out.append(self.next())
        return "".join(out)  # type: ignore[arg-type]

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()
        first = self.peek()
        if first is None:
            raise InvalidArgument("syntax error: missing '}'")
        if first in "{}:":
            raise InvalidArgument("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch is None:
            raise InvalidArgument("syntax error: missing '}'")
        if ch == "}":
            return self.lookup(name)[0]
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            if ch is None:
                raise InvalidArgument("syntax error: missing '}'")
            modifier += ch
        if ch in "+-?#%":
            trims = ch in "#%"
            if null_is_unset and trims:
                raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")
            word = self._word_to("}", trims)
            value, is_set = self.lookup(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if not is_set:
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return _trim_suffix(word, value, greedy) if ch == "%" else _trim_prefix(word, value, greedy)
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            pattern = self._word_to("/", True)
            replacement = self._word_to("}", True)
            value, _ = self.lookup(name)
            regex = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return regex.sub(lambda _m: replacement, value)
            return regex.sub(lambda _m: replacement, value, count=1)
        raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")

    def _word_to(self, stop: str, raw: bool) -> str:
        try:
            return self.until(stop, raw)[0]
        except InvalidArgument:
            if self.peek() is None:
                raise InvalidArgument(f"syntax error: missing '{stop}'" if stop == "}"
                                      else "syntax error: missing '/' in ${}") from None
            raise


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A `${VAR#pat}` shell pattern (`*`, `?`, `\\` escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
            if nxt in ("}", "/"):
                i += 1
                continue
            if nxt not in ("*", "?", "\\"):
                raise InvalidArgument(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy, anchored=True).match(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each `\\x` escape in front of its character."""
    tokens = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """`text` with quotes, escapes and variables processed, spaces kept (one word)."""
    return _Lexer(text, env, escape).until(None, False)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """`text` processed, then split into words at unquoted whitespace (EXPOSE's `$PORTS`)."""
    return _Lexer(text, env, escape).until(None, False)[1]


def env_map(env: list[str] | None) -> dict[str, str]:
    """`["K=V", ...]` as a dict (later entries win)."""
    out: dict[str, str] = {}
    for item in env or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out
