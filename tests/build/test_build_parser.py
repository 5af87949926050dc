"""The Dockerfile as Docker reads it: directives, comments, continuations, each instruction's grammar and
its errors (with the line), variable substitution, .dockerignore patterns, build args, and the same
instruction grammar behind `--change`."""

from __future__ import annotations

import pytest

from pydock.graph.instructions import apply_changes, parse_instruction
from pydock.graph.shellwords import expand_word, expand_words
from pydock.runtime.builder.buildargs import BuildArgs
from pydock.runtime.builder.dockerfile import parse, stages
from pydock.runtime.builder.ignore import IgnoreMatcher, read_patterns
from pydock.utils.errors import InvalidArgument


def _error(text: str) -> str:
    with pytest.raises(InvalidArgument) as err:
        stages(parse(text))
    return str(err.value)


def test_continuations_comments_and_lines():
    df = parse("# syntax=docker/dockerfile:1\n"
               "FROM busybox\n"
               "\n"
               "  # a comment, indented\n"
               "RUN echo a \\\n"
               "    # a comment inside the instruction is dropped\n"
               "    && echo b \\\n"
               "\n"
               "    && echo c\r\n"
               "run echo lower\n"
               "RUN echo \\\\\n")
    runs = [i for i in df.instructions if i.keyword == "RUN"]
    assert [(i.line, i.original) for i in runs] == [
        (5, "RUN echo a     && echo b     && echo c"), (10, "run echo lower"), (11, "RUN echo \\\\")]
    assert runs[0].args == ("echo a     && echo b     && echo c",)
    assert df.warnings == ("Empty continuation line found in: RUN echo a     && echo b     && echo c",)


def test_escape_directive():
    df = parse("# escape=`\nFROM busybox\nRUN dir c:\\ `\n  && echo done\nCOPY a\\b c:\\x\\\n")
    assert df.escape == "`"
    assert [i.original for i in df.instructions[1:]] == ["RUN dir c:\\   && echo done", "COPY a\\b c:\\x\\"]
    # a directive after the first instruction or comment is just a comment
    assert parse("FROM busybox\n# escape=`\nRUN a \\\n b\n").instructions[1].original == "RUN a  b"
    assert parse("# hello\n# escape=`\nFROM a\n").escape == "\\"


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nFOO bar\n", "dockerfile parse error on line 2: unknown instruction: FOO"),
    ("FROM busybox\nRUN true\nENV A\n", "dockerfile parse error on line 3: ENV must have two arguments"),
    ("FROM busybox\nCOPY onlyone\n", "dockerfile parse error on line 2: COPY requires at least two arguments"),
    ("RUN true\n", "dockerfile parse error on line 1: no build stage in current context"),
    ("FROM a b\n", "dockerfile parse error on line 1: FROM requires either one or three arguments"),
    ("FROM a AS 1st\n", "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X\n", "dockerfile parse error on line 2: x stage name already used"),
    ("# escape=x\nFROM a\n", "dockerfile parse error on line 1: invalid escape token 'x'"),
    ("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive can be used"),
    ("FROM a\nCMD [\"a\", 1]\n", "arrays must be comprised of strings only"),
    ("FROM a\nSHELL sh -c\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM a\nRUN --mount=type=cache,target=/x make\n", "the --mount option requires BuildKit"),
    ("FROM a\nCOPY --link a /b\n", "the --link option requires BuildKit"),
    ("FROM a\nCOPY --nope=1 a /b\n", "dockerfile parse error on line 2: Unknown flag: nope"),
    ("FROM a\nCOPY --from a /b\n", "Missing a value on flag: from"),
    ("FROM a\nHEALTHCHECK --interval=1us CMD true\n", "cannot be less than 1ms"),
    ("FROM a\nHEALTHCHECK FOO\n", 'Unknown type "FOO" in HEALTHCHECK'),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nLABEL a=b c\n", "Syntax error - can't find = in 'c'"),
    ("", "the Dockerfile cannot be empty"),
    ("# only a comment\n\n", "the Dockerfile cannot be empty"),
])
def test_syntax_errors_name_the_line(text: str, message: str):
    assert message in _error(text)


def test_forms_of_the_instructions():
    p = parse_instruction
    assert (p('RUN ["echo", "a b"]').args, p('RUN ["echo", "a b"]').json) == (("echo", "a b"), True)
    assert p("RUN [not json").args == ("[not json",)
    assert p('ENV A=1 B="two words" C=x\\ y').pairs == (("A", "1"), ("B", '"two words"'), ("C", "x\\ y"))
    assert p("ENV LEGACY the rest of it").pairs == (("LEGACY", "the rest of it"),)
    assert p('LABEL "a b"="c d"').pairs == (('"a b"', '"c d"'),)
    assert p("COPY --chown=1:2 --from=build a b /c/").flags == (("chown", "1:2"), ("from", "build"))
    assert p('COPY ["a b", "/c"]').args == ("a b", "/c")
    assert p("EXPOSE 80 443/udp").args == ("80", "443/udp")
    assert p("ARG A B=2").args == ("A", "B=2")
    hc = p("HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://x/ || exit 1")
    assert hc.extra == {"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"], "Interval": 30_000_000_000,
                        "Timeout": 90_000_000_000, "Retries": 3}
    assert p('HEALTHCHECK CMD ["true"]').extra == {"Test": ["CMD", "true"]}
    assert p("HEALTHCHECK NONE").extra == {"Test": ["NONE"]}
    assert p("onbuild RUN echo $HOME").trigger == "RUN echo $HOME"
    df = parse("ARG V=1\nFROM a AS build\nRUN x\nFROM scratch\nCOPY --from=build /x /x\n")
    meta, found = stages(df)
    assert [m.original for m in meta] == ["ARG V=1"]
    assert [(s.name, s.base, len(s.commands)) for s in found] == [("build", "a", 1), (None, "scratch", 1)]
    assert [s.base for s in stages(df, target="BUILD")[1]] == ["a"]
    with pytest.raises(InvalidArgument, match='target stage "nope" could not be found'):
        stages(df, target="nope")


@pytest.mark.parametrize("word, result", [
    ("$A", "1"), ("${A}", "1"), ("a${A}b", "a1b"), ("$UNSET", ""), ("${UNSET:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"), ("${EMPTY-dflt}", ""), ("${A:+alt}", "alt"), ("${UNSET+alt}", ""),
    ("\\$A", "$A"), ("'$A'", "$A"), ('"$A and $B"', "1 and two words"), ("${FILE%.*}", "app.tar"),
    ("${FILE%%.*}", "app"), ("${PATHS#*/}", "usr/bin:/bin"), ("${PATHS##*/}", "bin"),
    ("${PATHS/bin/X}", "/usr/X:/bin"), ("${PATHS//bin/X}", "/usr/X:/X"), ("a\\ b", "a b"), ("$", "$"),
])
def test_substitution(word: str, result: str):
    env = {"A": "1", "B": "two words", "EMPTY": "", "FILE": "app.tar.gz", "PATHS": "/usr/bin:/bin"}
    assert expand_word(word, env) == result


def test_substitution_errors_and_words():
    for bad, message in [("${A", "missing '}'"), ("${}", "bad substitution"), ("${A:?must be set}", "A: must be set"),
                         ('"open', "double-quote"), ("${A:x}", "unsupported modifier")]:
        with pytest.raises(InvalidArgument, match=message):
            expand_word(bad, {})
    assert expand_words("$PORTS 9000", {"PORTS": "80 443"}) == ["80", "443", "9000"]
    assert expand_words('"$PORTS" 9000', {"PORTS": "80 443"}) == ["80 443", "9000"]
    assert expand_word("`$A", {"A": "x"}, escape="`") == "$A"


@pytest.mark.parametrize("patterns, path, excluded", [
    (["*.log"], "a.log", True), (["*.log"], "sub/a.log", False), (["**/*.log"], "sub/deep/a.log", True),
    (["**/*.log"], "a.log", True), (["node_modules"], "node_modules/x/y", True), (["/build"], "build/out", True),
    (["docs", "!docs/keep.md"], "docs/keep.md", False), (["docs", "!docs/keep.md"], "docs/other.md", True),
    (["!a", "*"], "a", True), (["*", "!a"], "a", False), (["a/**"], "a/b/c", True), (["a/**"], "ab", False),
    (["d?r"], "dir/x", True), (["[a-c]*"], "beta", True), (["[a-c]*"], "delta", False),
    (["x/../y"], "y", True), (["# not a comment"], "# not a comment", False), (["a\\*b"], "a*b", True),
])
def test_dockerignore_patterns(patterns: list[str], path: str, excluded: bool):
    assert IgnoreMatcher(read_patterns("\n".join(patterns))).excluded(path) is excluded


def test_dockerignore_file_rules():
    assert read_patterns("\ufeff# comment\n\n  /abs/path  \n! keep\n./x\n") == ["abs/path", "!keep", "x"]
    with pytest.raises(InvalidArgument, match="illegal exclusion"):
        IgnoreMatcher(["!"])


def test_build_args_scopes():
    args = BuildArgs({"GIVEN": "g", "HTTP_PROXY": "http://proxy", "NOVALUE": None, "UNUSED": "u"})
    args.declare_meta("BASE", "busybox")
    args.declare_meta("GIVEN", "meta-default")
    stage = args.for_stage()
    assert stage.meta_values() == {"BASE": "busybox", "GIVEN": "g", "HTTP_PROXY": "http://proxy"}
    # in a stage, a meta ARG is only visible once declared again; proxies pass through undeclared
    assert stage.values() == {"HTTP_PROXY": "http://proxy"}
    stage.declare("BASE", None)
    stage.declare("LOCAL", "l")
    stage.declare("NOVALUE", None)
    assert stage.values() == {"BASE": "busybox", "LOCAL": "l", "HTTP_PROXY": "http://proxy"}
    env = stage.run_env(["LOCAL=from-env"])
    assert sorted(env) == ["BASE=busybox", "HTTP_PROXY=http://proxy"]
    assert stage.recorded(env) == ["BASE=busybox"]  # an undeclared proxy stays out of history and cache
    assert args.unused() == ["UNUSED"]


def test_change_uses_the_same_grammar():
    cfg = apply_changes({"Env": ["A=1"], "Cmd": ["old"]}, [
        'ENV B=${A}x C="$A y"', 'ENTRYPOINT ["run"]', "EXPOSE 80 7000-7001/udp", "WORKDIR /srv", "WORKDIR sub",
        "STOPSIGNAL SIGINT", "HEALTHCHECK --retries=2 CMD true", "ONBUILD RUN make", "VOLUME /a /b", "USER app"])
    assert cfg == {"Env": ["A=1", "B=1x", "C=1 y"], "Entrypoint": ["run"], "Cmd": None,
                   "ExposedPorts": {"80/tcp": {}, "7000/udp": {}, "7001/udp": {}}, "WorkingDir": "/srv/sub",
                   "StopSignal": "SIGINT", "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Retries": 2},
                   "OnBuild": ["RUN make"], "Volumes": {"/a": {}, "/b": {}}, "User": "app"}
    # a CMD given with the ENTRYPOINT is kept, whatever the order
    assert apply_changes(None, ['CMD ["x"]', 'ENTRYPOINT ["y"]'])["Cmd"] == ["x"]
    for bad, message in [("RUN true", "RUN is not supported"), ("STOPSIGNAL NOPE", "Invalid signal: NOPE"),
                         ("EXPOSE 80/xyz", "invalid proto: xyz"), ("FROM x", "FROM is not supported")]:
        with pytest.raises(InvalidArgument, match=message):
            apply_changes(None, [bad])
