"""Go's text/template, the part `docker ... --format` users write, over JSON-shaped data (dicts, lists,
strings, numbers, booleans, None).

Supported: text and actions with `{{-`/`-}}` trimming and comments; fields (`.A.B`, `$`, `$x.A`);
pipelines (`.Names | upper`); variables (`$x := ...`, `$x = ...`); `if`/`else if`/`else`, `range`
(with `$i, $v :=`, over lists and maps, map keys sorted as Go does), `with`; literals; parentheses;
Go's builtins (and, or, not, len, index, slice, print, printf, println, eq, ne, lt, le, gt, ge) and
Docker's functions (json, split, join, title, lower, upper, pad, truncate). Anything else (`define`,
`template`, `block`) is refused with a one-line error rather than printed wrong. A callable in the data is
a method: `.Label "tier"` calls it with the arguments.
Values print as Go's `%v` does: `map[a:1 b:2]`, `[x y]`, `<nil>`. A field missing from a map is an error,
as the docker CLI runs its templates (`index` of a missing key gives `<no value>`, as in Go).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydock.utils.errors import InvalidArgument


class TemplateError(InvalidArgument):
    """A template that fails while it runs (Docker's wording; the docker CLI exits 1)."""

    exit_code = 1


class TemplateSyntaxError(TemplateError):
    """A template that does not parse (the docker CLI exits 64, its usage-error status)."""

    exit_code = 64


class _Missing:
    """A map key that is not there: prints `<no value>`, is false, and further fields of it are missing too."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()

# ---- lexing ---------------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<decl>:=)
  | (?P<assign>=)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
""", re.X)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokens(action: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(action):
        m = _TOKEN.match(action, pos)
        if m is None:
            raise TemplateSyntaxError(f"template parsing error: unexpected {action[pos]!r} in command")
        kind = m.lastgroup or ""
        text = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        # `.A` right after `)` or a variable is a field of that value: glued to the previous token
        if kind == "field" and out and out[-1].kind in ("rparen", "var") and not action[m.start() - 1].isspace():
            out.append(_Tok("chain", text))
            continue
        out.append(_Tok(kind, text))
    return out


# ---- the tree -----------------------------------------------------------------------------------

@dataclass
class _Pipeline:
    decl: list[str]          # variables declared (`:=`) or assigned (`=`)
    assign: bool
    cmds: list[list[Any]]    # each command: a list of operands


@dataclass
class _Node:
    kind: str                                    # text, action, if, range, with
    text: str = ""
    pipe: _Pipeline | None = None
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)
    source: str = ""


def _split_actions(text: str) -> list[tuple[str, str]]:
    """[(kind "text"|"action", content)] with Go's trim markers applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if m.group(1):
            chunk = chunk.rstrip(" \t\r\n")
        parts.append(("text", chunk))
        parts.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    tail = text[pos:]
    if "{{" in tail:
        raise TemplateSyntaxError("template parsing error: template: :1: unclosed action")
    parts.append(("text", tail))
    return [p for p in parts if p != ("text", "")]


class _Parser:
    def __init__(self, text: str) -> None:
        self.parts = _split_actions(text)
        self.i = 0

    def parse(self) -> list[_Node]:
        nodes, end = self._list()
        if end is not None:
            raise TemplateSyntaxError(f"template parsing error: unexpected {{{{{end}}}}}")
        return nodes

    def _list(self) -> tuple[list[_Node], str | None]:
        """Nodes up to an `else`/`end` (returned as the second item) or the end of the text."""
        nodes: list[_Node] = []
        while self.i < len(self.parts):
            kind, content = self.parts[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(_Node("text", text=content))
                continue
            stripped = content.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise TemplateSyntaxError("template parsing error: unclosed comment")
                continue
            word = stripped.split(None, 1)[0] if stripped else ""
            if word in ("end", "else"):
                return nodes, stripped
            if word in ("if", "range", "with"):
                nodes.append(self._block(word, stripped[len(word):], content))
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateSyntaxError(f"template parsing error: {{{{{word}}}}} is not supported by pydock's --format")
            elif not stripped:
                raise TemplateSyntaxError("template parsing error: missing value for command")
            else:
                nodes.append(_Node("action", pipe=_pipeline(_tokens(stripped)), source=stripped))
        return nodes, None

    def _block(self, word: str, rest: str, source: str) -> _Node:
        node = _Node(word, pipe=_pipeline(_tokens(rest)), source=source.strip())
        node.body, end = self._list()
        self._finish(node, end)
        return node

    def _finish(self, node: _Node, end: str | None) -> None:
        """Close `node` at `end`: `end`, `else ... end`, or `else if ...` (an if in the else branch that
        shares the chain's one `end`)."""
        if end is None:
            raise TemplateSyntaxError(f"template parsing error: unexpected EOF in {node.kind}")
        if end == "end":
            return
        tail = end[4:].strip() if end.startswith("else") else None
        if tail is None:
            raise TemplateSyntaxError(f"template parsing error: unexpected {end!r}")
        if not tail:
            node.orelse, end = self._list()
            if end != "end":
                raise TemplateSyntaxError(f"template parsing error: expected end; found {end or 'EOF'}")
            return
        word = tail.split(None, 1)[0]
        if word not in ("if", "with") or word != node.kind:
            raise TemplateSyntaxError(f"template parsing error: unexpected {tail!r} after else")
        inner = _Node(word, pipe=_pipeline(_tokens(tail[len(word):])), source=tail)
        inner.body, end = self._list()
        self._finish(inner, end)
        node.orelse = [inner]


def _pipeline(toks: list[_Tok]) -> _Pipeline:
    decl: list[str] = []
    assign = False
    # `$x :=` / `$i, $v :=` / `$x =`
    j = 0
    names: list[str] = []
    while j < len(toks) and toks[j].kind == "var":
        names.append(toks[j].text)
        if j + 1 < len(toks) and toks[j + 1].kind == "comma":
            j += 2
            continue
        j += 1
        break
    if names and j < len(toks) and toks[j].kind in ("decl", "assign"):
        decl, assign = names, toks[j].kind == "assign"
        toks = toks[j + 1:]
    cmds: list[list[Any]] = [[]]
    pos = 0
    while pos < len(toks):
        tok = toks[pos]
        if tok.kind == "pipe":
            if not cmds[-1]:
                raise TemplateSyntaxError("template parsing error: missing command before |")
            cmds.append([])
            pos += 1
            continue
        operand, pos = _operand(toks, pos)
        cmds[-1].append(operand)
    if not cmds[-1]:
        raise TemplateSyntaxError("template parsing error: missing value for command")
    return _Pipeline(decl, assign, cmds)


def _operand(toks: list[_Tok], pos: int) -> tuple[Any, int]:
    tok = toks[pos]
    pos += 1
    if tok.kind == "lparen":
        depth, start = 1, pos
        while pos < len(toks) and depth:
            depth += {"lparen": 1, "rparen": -1}.get(toks[pos].kind, 0)
            pos += 1
        if depth:
            raise TemplateSyntaxError("template parsing error: unclosed left paren")
        value: Any = ("pipe", _pipeline(toks[start:pos - 1]))
    elif tok.kind == "field":
        value = ("field", ("dot",), tok.text[1:].split("."))
    elif tok.kind == "dot":
        value = ("dot",)
    elif tok.kind == "var":
        value = ("var", tok.text)
    elif tok.kind == "str":
        value = ("lit", json.loads(tok.text))
    elif tok.kind == "raw":
        value = ("lit", tok.text[1:-1])
    elif tok.kind == "num":
        text = tok.text
        value = ("lit", int(text, 0) if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", text) else float(text))
    elif tok.kind == "ident":
        literals = {"true": True, "false": False, "nil": None}
        if tok.text not in literals and tok.text not in FUNCS and tok.text not in ("and", "or"):
            raise TemplateSyntaxError(f'template parsing error: template: :1: function "{tok.text}" not defined')
        value = ("lit", literals[tok.text]) if tok.text in literals else ("func", tok.text)
    else:
        raise TemplateSyntaxError(f"template parsing error: unexpected {tok.text!r} in operand")
    while pos < len(toks) and toks[pos].kind == "chain":
        value = ("field", value, toks[pos].text[1:].split("."))
        pos += 1
    return value, pos


# ---- printing and truth, as Go's fmt and text/template --------------------------------------------

def go_format(value: Any) -> str:
    """`%v` of a JSON-shaped value."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)


def truth(value: Any) -> bool:
    """Go's truth for if/with/and/or/not: false, 0, nil and empty things are false."""
    if value is MISSING or value is None:
        return False
    if isinstance(value, (bool, int, float, str, Mapping, list, tuple)):
        return bool(value)
    return True


def _go_json(value: Any) -> str:
    if isinstance(value, Mapping):  # an item's methods are not part of its JSON, as in Go
        value = {k: v for k, v in value.items() if not callable(v)}
    return json.dumps(None if value is MISSING else value, separators=(",", ":"), ensure_ascii=False)


_PRINTF_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])")


def _printf(fmt: str, *args: Any) -> str:
    queue = list(args)

    def one(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        if not queue:
            return f"%!{verb}(MISSING)"
        arg = queue.pop(0)
        spec = "%" + flags + width + (f".{prec}" if prec else "")
        if verb == "d" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return (spec + "d") % int(arg)
        if verb in "eEfFgG" and isinstance(arg, (int, float)):
            return (spec + verb) % arg
        if verb == "q":
            return (spec + "s") % json.dumps(go_format(arg) if not isinstance(arg, str) else arg)
        if verb == "t" and isinstance(arg, bool):
            return (spec + "s") % go_format(arg)
        if verb in "xX" and isinstance(arg, int):
            return (spec + verb) % arg
        if verb in "vs":
            return (spec + "s") % go_format(arg)
        return f"%!{verb}({go_format(arg)})"
    return _PRINTF_VERB.sub(one, fmt)


def _print(*args: Any) -> str:
    # Go's Sprint: a space between operands when neither is a string
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_format(arg)
    return out


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key, MISSING)
        elif isinstance(item, (list, tuple, str)) and isinstance(key, int):
            if not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is None or item is MISSING:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: can't index item of type {_type(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, (Mapping, list, tuple, str)):
        return len(item)
    raise TemplateError(f"error calling len: len of type {_type(item)}")


def _slice(item: Any, *bounds: int) -> Any:
    if not isinstance(item, (list, tuple, str)):
        raise TemplateError(f"error calling slice: can't slice item of type {_type(item)}")
    return item[slice(*bounds)] if bounds else item


def _compare(op: Callable[[Any, Any], bool], name: str) -> Callable[..., bool]:
    def compare(a: Any, *others: Any) -> bool:
        if not others:
            raise TemplateError(f"wrong number of args for {name}: want at least 2 got 1")
        for b in others:
            if isinstance(a, bool) != isinstance(b, bool) or isinstance(a, str) != isinstance(b, str):
                raise TemplateError(f"error calling {name}: incompatible types for comparison")
            if name == "eq" and op(a, b):
                return True
            if name != "eq" and not op(a, b):
                return False
        return name != "eq"
    return compare


def _pad(s: Any, left: int, right: int) -> str:
    return " " * left + go_format(s) + " " * right


def _truncate(s: Any, n: int) -> str:
    text = go_format(s)
    return text[:n] if len(text) > n else text


def _type(value: Any) -> str:
    return {dict: "map[string]interface {}", list: "[]interface {}", str: "string", bool: "bool",
            int: "float64", float: "float64", type(None): "<nil>"}.get(type(value), type(value).__name__)


#: the functions a template may call (`and` and `or` short-circuit, so they are evaluated apart)
FUNCS: dict[str, Callable[..., Any]] = {
    "json": _go_json, "split": lambda s, sep: go_format(s).split(sep),
    "join": lambda items, sep: sep.join(go_format(i) for i in (items or [])),
    "title": lambda s: go_format(s).title(), "lower": lambda s: go_format(s).lower(),
    "upper": lambda s: go_format(s).upper(), "pad": _pad, "truncate": _truncate,
    "len": _len, "index": _index, "slice": _slice, "print": _print, "println": lambda *a: " ".join(
        go_format(x) for x in a) + "\n", "printf": _printf, "not": lambda v: not truth(v),
    "eq": _compare(lambda a, b: a == b, "eq"), "ne": _compare(lambda a, b: a != b, "ne"),
    "lt": _compare(lambda a, b: a < b, "lt"), "le": _compare(lambda a, b: a <= b, "le"),
    "gt": _compare(lambda a, b: a > b, "gt"), "ge": _compare(lambda a, b: a >= b, "ge"),
}


# ---- execution ------------------------------------------------------------------------------------

class Template:
    """A parsed template: `Template(text).render(data)`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = _Parser(text).parse()

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, [{"$": data}], out)
        return "".join(out)

    def _run(self, nodes: Sequence[_Node], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
                continue
            assert node.pipe is not None
            try:
                value = self._pipe(node.pipe, dot, scopes)
            except TemplateError as err:
                if str(err).startswith("template"):
                    raise
                raise TemplateError(f'template: :1: executing "" at <{node.source}>: {err}') from None
            if node.kind == "action":
                if not node.pipe.decl:
                    out.append(go_format(value))
            elif node.kind == "if":
                self._run(node.body if truth(value) else node.orelse, dot, [*scopes, {}], out)
            elif node.kind == "with":
                if truth(value):
                    self._run(node.body, value, [*scopes, {}], out)
                else:
                    self._run(node.orelse, dot, [*scopes, {}], out)
            elif node.kind == "range":
                self._range(node, value, dot, scopes, out)

    def _range(self, node: _Node, value: Any, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        assert node.pipe is not None
        if isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif value is None or value is MISSING:
            items = []
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"range can't iterate over {go_format(value)}")
        if not items:
            self._run(node.orelse, dot, [*scopes, {}], out)
            return
        names = node.pipe.decl
        for key, elem in items:
            scope: dict[str, Any] = {}
            if len(names) == 1:
                scope[names[0]] = elem
            elif len(names) == 2:
                scope[names[0]], scope[names[1]] = key, elem
            self._run(node.body, elem, [*scopes, scope], out)

    def _pipe(self, pipe: _Pipeline, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        value: Any = MISSING
        for i, cmd in enumerate(pipe.cmds):
            value = self._command(cmd, dot, scopes, value if i else None, piped=bool(i))
        if pipe.decl and len(pipe.decl) == 1:
            if pipe.assign:
                for scope in reversed(scopes):
                    if pipe.decl[0] in scope:
                        scope[pipe.decl[0]] = value
                        break
                else:
                    raise TemplateError(f"undefined variable: {pipe.decl[0]}")
            else:
                scopes[-1][pipe.decl[0]] = value
        return value

    def _command(self, cmd: list[Any], dot: Any, scopes: list[dict[str, Any]], piped_value: Any,
                 piped: bool) -> Any:
        head = cmd[0]
        if head[0] == "func":
            name = head[1]  # a known function: the parser refuses any other name
            if name in ("and", "or"):
                args = cmd[1:]
                if not args and not piped:
                    raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0")
                result: Any = None
                values = [lambda a=a: self._value(a, dot, scopes) for a in args]
                if piped:
                    values.append(lambda: piped_value)
                for get in values:
                    result = get()
                    if (name == "and") != truth(result):
                        return result
                return result
            args = [self._value(a, dot, scopes) for a in cmd[1:]]
            if piped:
                args.append(piped_value)
            try:
                return FUNCS[name](*args)
            except TypeError as err:
                raise TemplateError(f"wrong number of args for {name}: {err}") from None
        if len(cmd) > 1 or piped:
            target = self._value(head, dot, scopes) if head[0] == "field" else None
            if not callable(target):
                raise TemplateError(f"can't give argument to non-function {_describe(head)}")
            args = [self._value(a, dot, scopes) for a in cmd[1:]] + ([piped_value] if piped else [])
            try:
                return target(*args)  # a method of the item, as `.Label "key"` in a ps row
            except TypeError as err:
                raise TemplateError(f"wrong number of args for {_describe(head)}: {err}") from None
        value = self._value(head, dot, scopes)
        return value() if callable(value) and head[0] == "field" else value

    def _value(self, operand: Any, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind = operand[0]
        if kind == "lit":
            return operand[1]
        if kind == "dot":
            return dot
        if kind == "var":
            for scope in reversed(scopes):
                if operand[1] in scope:
                    return scope[operand[1]]
            raise TemplateError(f"undefined variable: {operand[1]}")
        if kind == "pipe":
            return self._pipe(operand[1], dot, scopes)
        if kind == "func":
            return self._command([operand], dot, scopes, None, piped=False)
        if kind == "field":
            value = self._value(operand[1], dot, scopes)
            for name in operand[2]:
                value = _field(value, name)
            return value
        raise TemplateError(f"unexpected operand {operand!r}")


def _field(value: Any, name: str) -> Any:
    if value is MISSING:
        return MISSING
    if isinstance(value, Mapping):
        if name not in value:
            raise TemplateError(f'map has no entry for key "{name}"')
        return value[name]
    if value is None:
        raise TemplateError(f"nil pointer evaluating interface {{}}.{name}")
    raise TemplateError(f"can't evaluate field {name} in type {_type(value)}")


def _describe(operand: Any) -> str:
    if operand[0] == "field":
        return "." + ".".join(operand[2])
    return str(operand[1]) if len(operand) > 1 else "."


def render(text: str, data: Any) -> str:
    """Parse `text` and run it over `data` (a `TemplateError` for a bad template, one line)."""
    return Template(text).render(data)


def tabwrite(lines: Sequence[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter as the docker CLI sets it for `table` formats: tab-terminated cells padded to
    their column's width (the widest cell + padding, at least minwidth); a line's last cell as is."""
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            w = max(len(cell) + padding, minwidth)
            if i >= len(widths):
                widths.append(w)
            elif w > widths[i]:
                widths[i] = w
    return "\n".join("".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1] for cells in rows)
