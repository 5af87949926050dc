"""utils/gotemplate.py: the Go text/template subset `--format` uses, printing what Go prints (the docker CLI
cross-check over real containers is tests/api/test_api_format.py)."""

from __future__ import annotations

import pytest

from pydock.utils.gotemplate import TemplateError, TemplateSyntaxError, render, tabwrite

DATA = {"Id": "abc", "State": {"Pid": 42, "Running": True, "Status": "running"},
        "Config": {"Env": ["A=1", "B=2"], "Labels": {"z": "1", "a": "2"}}, "Null": None, "N": 3}


@pytest.mark.parametrize(("template", "printed"), [
    ("{{.State.Pid}}", "42"),
    ("{{json .Config.Labels}}", '{"z":"1","a":"2"}'),
    ("{{.Config.Labels}}", "map[a:2 z:1]"),                       # Go prints maps with sorted keys
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Null}}", "<nil>"),
    ("{{index .Config.Labels \"missing\"}}", "<no value>"),
    ("{{range .Config.Env}}{{.}},{{end}}", "A=1,B=2,"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "a=2 z=1 "),
    ("{{range .Null}}x{{else}}empty{{end}}", "empty"),
    ("{{if .Null}}x{{else if .N}}n{{else}}e{{end}}", "n"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{$x := .Id}}{{$x}} {{$.N}}", "abc 3"),
    ("{{.Id | upper}} {{join .Config.Env \", \"}} {{len .Config.Env}}", "ABC A=1, B=2 2"),
    ("{{printf \"%-5s|%03d\" .Id .N}}", "abc  |003"),
    ("{{eq .State.Status \"running\" \"x\"}} {{ne .N 3}} {{lt 1 2}}", "true false true"),
    ("{{and .Id .N}} {{or .Null .Id}} {{not .Null}}", "3 abc true"),
    ("a {{- \" b \" -}} c{{/* gone */}}", "a b c"),
    ("{{(index .Config.Env 1)}} {{$s := .State}}{{$s.Pid}}", "B=2 42"),
    ("{{split \"a,b\" \",\"}} {{title \"web\"}} {{truncate .Id 2}} {{pad .Id 1 1}}|", "[a b] Web ab  abc |"),
])
def test_templates_print_as_go_does(template, printed):
    assert render(template, DATA) == printed


@pytest.mark.parametrize(("template", "error", "message"), [
    ("{{.Id", TemplateSyntaxError, "unclosed action"),
    ("{{nofunc .Id}}", TemplateSyntaxError, 'function "nofunc" not defined'),
    ("{{if .Id}}open", TemplateSyntaxError, "unexpected EOF"),
    ("{{end}}", TemplateSyntaxError, "unexpected"),
    ("{{define \"x\"}}{{end}}", TemplateSyntaxError, "not supported"),
    ("{{.Nope}}", TemplateError, 'map has no entry for key "Nope"'),
    ("{{.Id.X}}", TemplateError, "can't evaluate field X in type string"),
    ("{{index .Config.Env 5}}", TemplateError, "index out of range"),
    ("{{.Id 1}}", TemplateError, "can't give argument to non-function .Id"),
])
def test_bad_templates_fail_in_one_line(template, error, message):
    with pytest.raises(error, match=message) as caught:
        render(template, DATA)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == (64 if error is TemplateSyntaxError else 1)


def test_a_callable_is_a_method_and_stays_out_of_json():
    row = {"ID": "c1", "Label": lambda key: {"tier": "web"}.get(key, "")}
    assert render('{{.Label "tier"}}|{{.Label "x"}}|{{json .}}', row) == 'web||{"ID":"c1"}'


def test_tabwrite_pads_like_the_docker_cli():
    # minwidth 10, padding 3; the last cell of a line is not padded
    assert tabwrite(["CONTAINER ID\tNAMES", "abc\tweb"]) == "CONTAINER ID   NAMES\nabc            web"
    assert tabwrite(["ID\tX", "a\tb"]) == "ID        X\na         b"
