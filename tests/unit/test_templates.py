"""Tests for the Go text/template renderer; expected outputs follow Go's text/template."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigate.gotemplate import (
    MissingVariable,
    Template,
    TemplateError,
    TemplateSyntaxError,
    compile_template,
    render,
    render_value,
)

DATA = {
    "s": "str",
    "n": 3,
    "f": 1.5,
    "t": True,
    "z": None,
    "empty": "",
    "l": [1, 2, 3],
    "names": ["ann", "bob"],
    "m": {"b": 2, "a": 1, "c": 3},
    "o": {"k": "K", "inner": {"deep": "D"}},
    "people": [{"name": "Ann", "age": 30}, {"name": "Bob", "age": 25}],
    "zh": "你好",
}


def case(source: str, expected: str, data: dict | None = None):
    return pytest.param(source, expected, data, id=source[:60])


TEXT_AND_TRIM = [
    case("plain text", "plain text"),
    case("", ""),
    case("only }} closing", "only }} closing"),
    case("{{ .s }}", "str"),
    case("{{.s}}", "str"),
    case("a  {{- .n }}  b", "a3  b"),
    case("a  {{ .n -}}  b", "a  3b"),
    case("a \n\t{{- .n -}}\n\t b", "a3b"),
    case("{{ .n -}}\n\n{{ .n }}", "33"),
    case("a {{-3}} b", "a -3 b"),  # "-3" is a number, not a trim marker
    case("a {{- 3}} b", "a3 b"),
    case("a {{3 -}} b", "a 3b"),
    case("a {{ -3 }} b", "a -3 b"),
    case("{{- range .names }}\n- {{ . }}\n{{- end }}", "\n- ann\n- bob"),
    case("a{{/* comment */}}b", "ab"),
    case("a{{/* multi\nline {{ .x }} */}}b", "ab"),
    case("x {{- /* c */ -}} y", "xy"),
    case("x {{/* c */}} y", "x  y"),
    case("x {{- /* c */}} y", "x y"),
    case("{{ .s }}\n", "str\n"),
]

FIELDS_AND_VARIABLES = [
    case("{{ .o.k }}-{{ .o.inner.deep }}", "K-D"),
    case("{{ . }}", '{"k":"K"}', {"k": "K"}),
    case("{{ $.s }}{{ $.o.k }}", "strK"),
    case("{{ $x := .o }}{{ $x.k }}{{ $x.inner.deep }}", "KD"),
    case("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
    case("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    case("{{ $last := 0 }}{{ range .l }}{{ $last = . }}{{ end }}{{ $last }}", "3"),
    case("{{ with $v := .o }}{{ $v.k }}{{ end }}", "K"),
    case("{{ if $v := .s }}{{ $v }}{{ end }}", "str"),
    case("{{ (index .people 1).name }}", "Bob"),
    case("{{ .z }}", ""),  # present but null: empty, not missing
    case("{{ .emoji }}", "🙂", {"emoji": "🙂"}),
]

LITERALS = [
    case('{{ "a\\tb\\n\\"q\\"\\\\" }}', 'a\tb\n"q"\\'),
    case("{{ `raw \\n {{ .x }}` }}", "raw \\n {{ .x }}"),
    case('{{ "\\u4f60\\U0001F642\\x41\\101" }}', "你🙂AA"),
    case('{{ "\\xe4\\xbd\\xa0" }}', "你"),
    case("{{ 42 }} {{ -7 }} {{ +5 }}", "42 -7 5"),
    case("{{ 1.50 }} {{ 2.0 }} {{ 1e3 }} {{ .5 }}", "1.5 2 1000 0.5"),
    case("{{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }}", "31 15 15 5 1000"),
    case("{{ 'a' }} {{ '\\n' }}", "97 10"),
    case("{{ true }} {{ false }}", "true false"),
]

OUTPUT_VALUES = [
    case("{{ .v }}", "1", {"v": 1}),
    case("{{ .v }}", "-12345678", {"v": -12345678}),
    case("{{ .v }}", "2", {"v": 2.0}),
    case("{{ .v }}", "1.5", {"v": 1.5}),
    case("{{ .v }}", "0.1", {"v": 0.1}),
    case("{{ .v }}", "123456", {"v": 123456.0}),
    case("{{ .v }}", "1.234567e+06", {"v": 1234567.0}),
    case("{{ .v }}", "1e+21", {"v": 1e21}),
    case("{{ .v }}", "0.0001", {"v": 0.0001}),
    case("{{ .v }}", "1e-05", {"v": 0.00001}),
    case("{{ .v }}", "-2.5e-07", {"v": -2.5e-07}),
    case("{{ .v }}", "+Inf", {"v": float("inf")}),
    case("{{ .v }}", "true", {"v": True}),
    case("{{ .v }}", "", {"v": None}),
    case(
        "{{ .v }}",
        '{"名":"值","n":[1,2.5,null,true]}',
        {"v": {"名": "值", "n": [1, 2.5, None, True]}},
    ),
    case("{{ .v }}", '["a",{"b":1}]', {"v": ["a", {"b": 1}]}),
]

CONDITIONALS = [
    case("{{ if .t }}yes{{ end }}", "yes"),
    case("{{ if .empty }}yes{{ else }}no{{ end }}", "no"),
    case(
        "{{ if eq .n 1 }}one{{ else if eq .n 2 }}two{{ else if eq .n 3 }}three{{ else }}many{{ end }}",
        "three",
    ),
    case("{{ if eq .n 9 }}a{{ else if .empty }}b{{ end }}", ""),
    case("{{ with .o }}{{ .k }}{{ end }}", "K"),
    case("{{ with .o.inner }}{{ .deep }}{{ $.s }}{{ end }}", "Dstr"),
    case("{{ with .empty }}x{{ else }}none{{ end }}", "none"),
    case("{{ with .empty }}A{{ else with .o }}{{ .k }}{{ else }}none{{ end }}", "K"),
    case("{{ with .z }}x{{ else }}{{ .s }}{{ end }}", "str"),
]


def _truth_cases():
    falsy = [False, 0, 0.0, None, "", [], {}]
    truthy = [True, 1, -1, 0.5, "0", "a", [0], {"a": 0}]
    for value in falsy:
        yield case("{{ if .v }}T{{ else }}F{{ end }}", "F", {"v": value})
    for value in truthy:
        yield case("{{ if .v }}T{{ else }}F{{ end }}", "T", {"v": value})


RANGES = [
    case("{{ range .l }}{{ . }},{{ end }}", "1,2,3,"),
    case("{{ range $i, $v := .names }}{{ $i }}:{{ $v }} {{ end }}", "0:ann 1:bob "),
    case("{{ range $v := .names }}{{ $v }}{{ end }}", "annbob"),
    case("{{ range .m }}{{ . }}{{ end }}", "123"),  # maps range in key order
    case("{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}", "a=1;b=2;c=3;"),
    case("{{ range .people }}{{ .name }}({{ .age }}){{ end }}", "Ann(30)Bob(25)"),
    case("{{ range .people }}{{ $.s }}{{ end }}", "strstr"),
    case("{{ range .e }}x{{ else }}empty{{ end }}", "empty", {"e": []}),
    case("{{ range .e }}x{{ else }}empty{{ end }}", "empty", {"e": {}}),
    case("{{ range .e }}x{{ else }}empty{{ end }}", "empty", {"e": None}),
    case("{{ range .l }}{{ else }}empty{{ end }}", ""),
    case("{{ range .g }}[{{ range . }}{{ . }}{{ end }}]{{ end }}", "[12][3]", {"g": [[1, 2], [3]]}),
    case("{{ range .l }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}", "1"),
    case("{{ range .l }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", "13"),
    case("{{ range 3 }}{{ . }}{{ end }}", "012"),
    case("{{ range $i, $x := .l }}{{ $y := $x }}{{ $y }}{{ end }}", "123"),
]

PIPELINES = [
    case('{{ .s | printf "%s!" }}', "str!"),
    case('{{ "a" | print "b" }}', "ba"),
    case("{{ .n | eq 3 }}", "true"),
    case("{{ .names | len | print }}", "2"),
    case("{{ len (index .people 0).name }}", "3"),
    case("{{ (len .l) }}", "3"),
    case('{{ printf "%d-%s" (len .l) (index .names 1) }}', "3-bob"),
    case("{{ 0 | index .l }}", "9", {"l": [9]}),
]

BUILTINS = [
    case('{{ eq .n 3 }} {{ eq .s "x" }} {{ eq .n 1 2 3 }} {{ eq .n 1 2 }}', "true false true false"),
    case("{{ eq .z nil }} {{ eq .n nil }} {{ eq 1 1.0 }}", "true false true"),
    case('{{ ne .n 3 }} {{ ne .s "x" }}', "false true"),
    case(
        "{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 2 2 }} {{ lt 1 1.5 }}",
        "true true false true true",
    ),
    case('{{ lt "a" "b" }} {{ gt "b" "a" }}', "true true"),
    case('{{ and 1 "a" }}|{{ and 0 "a" }}|{{ or "" "b" }}|{{ or 0 "" }}', "a|0|b|"),
    case("{{ and false .nope }} {{ or true .nope }}", "false true"),  # short-circuit
    case("{{ .n | and 1 }} {{ .n | or 0 }}", "3 3"),
    case("{{ not 0 }} {{ not .s }} {{ not .z }}", "true false true"),
    case("{{ len .l }} {{ len .m }} {{ len .s }} {{ len .zh }}", "3 3 3 6"),  # bytes, as Go
    case('{{ index .l 0 }} {{ index .m "b" }} {{ index .o "inner" "deep" }}', "1 2 D"),
    case('{{ index .people 1 "name" }} {{ index .l }}', "Bob [1,2,3]"),
    case('{{ index .m "absent" }}|{{ if index . "absent" }}x{{ else }}y{{ end }}', "|y"),
    case('{{ index "abc" 1 }}', "98"),
    case('{{ print 1 2 }}|{{ print "a" 1 }}|{{ print 1 "a" 2 }}|{{ print .z }}', "1 2|a1|1a2|<nil>"),
    case("{{ print .l .o.inner }}", '[1,2,3] {"deep":"D"}'),
    case('{{ println 1 "a" }}', "1 a\n"),
]

PRINTF = [
    case('{{ printf "%s %d %v %%" .s .n .f }}', "str 3 1.5 %"),
    case('{{ printf "%.2f|%f|%.0f" 3.14159 1.5 2.5 }}', "3.14|1.500000|2"),
    case('{{ printf "%.2f" .n }}', "3.00"),  # ints accepted for float verbs
    case('{{ printf "%d" 2.0 }}', "2"),
    case('{{ printf "%q" "a\\"b\\n\\x01" }}', '"a\\"b\\n\\x01"'),
    case('{{ printf "%q" .zh }}', '"你好"'),
    case('{{ printf "%5d|%-5d|%05d|%+d" 42 42 -42 5 }}', "   42|42   |-0042|+5"),
    case('{{ printf "%6.2f|%-6s|%6s|%.2s" -1.5 "ab" "ab" "hello" }}', " -1.50|ab    |    ab|he"),
    case('{{ printf "%x %X %#x %x" 255 255 255 "hi" }}', "ff FF 0xff 6869"),
    case('{{ printf "%e|%g|%.3g|%g" 1234.5 1e6 3.14159 0.5 }}', "1.234500e+03|1e+06|3.14|0.5"),
    case('{{ printf "%t %v %v" true .l .z }}', "true [1,2,3] <nil>"),
    case('{{ printf "%s" .n }}', "3"),
    case('{{ printf "%T %T %T %T" 1 1.5 "s" .l }}', "int float64 string []interface {}"),
    case('{{ printf "%d" "a" }}', "%!d(string=a)"),
    case('{{ printf "%d %d" 1 }}', "1 %!d(MISSING)"),
    case('{{ printf "%d" 1 2 }}', "1%!(EXTRA int=2)"),
    case('{{ printf "%z" 1 }}', "%!z(int=1)"),
    case('{{ printf "%v %v %v" 2.0 1e6 .n }}', "2 1e+06 3"),
    case('{{ printf "%5.1f%%" 99.44 }}', " 99.4%"),
    case('{{ printf "plain" }}', "plain"),
    case('{{ printf "50%" }}', "50%!(NOVERB)"),
]


@pytest.mark.parametrize(
    ("source", "expected", "data"),
    TEXT_AND_TRIM
    + FIELDS_AND_VARIABLES
    + LITERALS
    + OUTPUT_VALUES
    + CONDITIONALS
    + list(_truth_cases())
    + RANGES
    + PIPELINES
    + BUILTINS
    + PRINTF,
)
def test_render(source: str, expected: str, data: dict | None) -> None:
    assert render(source, DATA if data is None else data) == expected


def test_product_example() -> None:
    source = (
        "现在你扮演 {{ .example_string }}, 告诉我如何使用 {{ .example_object.key }} 完成 {{ .example_object.key2 }}。"
    )
    data = {"example_string": "老师", "example_object": {"key": "锤子", "key2": "钉钉子"}}
    assert render(source, data) == "现在你扮演 老师, 告诉我如何使用 锤子 完成 钉钉子。"


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("source", "data", "name"),
    [
        ("{{ .missing }}", {}, "missing"),
        ("{{ .example_object.key2 }}", {"example_object": {"key": 1}}, "example_object.key2"),
        ("{{ .a.b }}", {"a": "a string"}, "a.b"),
        ("{{ .a.b }}", {"a": None}, "a.b"),
        ("{{ .a.b }}", {"a": [1]}, "a.b"),
        ("{{ .a.b.c }}", {"a": {}}, "a.b"),
        ("{{ $.a.x }}", {"a": {}}, "a.x"),
        ("{{ range .l }}{{ .name }}{{ end }}", {"l": [{}]}, "name"),
        ("{{ range $p := .l }}{{ $p.name }}{{ end }}", {"l": [{}]}, "$p.name"),
        ("{{ with .o }}{{ .gone }}{{ end }}", {"o": {"k": 1}}, "gone"),
        ("{{ if .flag }}x{{ end }}", {}, "flag"),
        ("{{ range .items }}x{{ end }}", {}, "items"),
        ("{{ len .text }}", {}, "text"),
        ("{{ (index .l 0).name }}", {"l": [{}]}, "name"),
        ("{{ and true .nope }}", {}, "nope"),
    ],
)
def test_missing_variable(source: str, data: dict, name: str) -> None:
    with pytest.raises(MissingVariable) as info:
        render(source, data)
    assert info.value.name == name
    assert str(info.value) == f"missing template variable {name!r}"
    assert isinstance(info.value, TemplateError)
    assert isinstance(info.value, KeyError)


def test_missing_variable_has_position() -> None:
    with pytest.raises(MissingVariable) as info:
        render("line one\n  {{ .absent }}", {})
    assert (info.value.line, info.value.column) == (2, 3)


@pytest.mark.parametrize(
    ("source", "data", "message"),
    [
        ("{{ index .l 5 }}", {"l": [1]}, "index out of range: 5"),
        ("{{ index .l -1 }}", {"l": [1]}, "index out of range: -1"),
        ('{{ index .l "a" }}', {"l": [1]}, "cannot index slice/array with type string"),
        ("{{ index .n 0 }}", {"n": 1}, "can't index item of type int"),
        ("{{ index .z 0 }}", {"z": None}, "can't index item of type <nil>"),
        ('{{ lt 1 "a" }}', {}, "incompatible types for comparison"),
        ('{{ eq 1 "1" }}', {}, "incompatible types for comparison"),
        ("{{ lt true false }}", {}, "invalid type for comparison"),
        ("{{ eq .l .l }}", {"l": [1]}, "non-comparable type"),
        ("{{ len 3 }}", {}, "len of type int"),
        ("{{ len .z }}", {"z": None}, "len of nil pointer"),
        ("{{ range .s }}{{ end }}", {"s": "abc"}, "range can't iterate over abc"),
        ("{{ range $i, $v := 3 }}{{ end }}", {}, "range can't iterate over 3"),
        ("{{ printf 1 }}", {}, "printf format must be a string"),
    ],
)
def test_render_errors(source: str, data: dict, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, data)
    assert not isinstance(info.value, MissingVariable)
    assert message in str(info.value)
    assert "line 1" in str(info.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ .x", "unclosed action"),
        ("{{ .x }", "unexpected '}'"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ else }}", "unexpected {{else}}"),
        ("{{ if .x }}", "unexpected EOF"),
        ("{{ range .x }}{{ else }}", "unexpected EOF"),
        ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", "expected {{end}}; found {{else}}"),
        ("{{ range .x }}{{ else if 1 }}{{ end }}", "unexpected 'if' in else"),
        ("{{ end 1 }}", "unexpected {{end}}"),
        ("{{ if 1 }}{{ end 1 }}", "unexpected '1' in end"),
        ("{{ foo }}", "function 'foo' not defined"),
        ("{{ .x | upper }}", "function 'upper' not defined"),
        ("{{ $y }}", "undefined variable '$y'"),
        ("{{ if 1 }}{{ $v := 1 }}{{ end }}{{ $v }}", "undefined variable '$v'"),
        ("{{ $y = 1 }}", "undefined variable '$y'"),
        ("{{ }}", "missing value for command"),
        ("{{ if }}{{ end }}", "missing value for if"),
        ("{{ .x | }}", "missing command after '|'"),
        ("{{ 1 | 2 }}", "non executable command in pipeline stage 2"),
        ("{{ .a .b }}", "can't give argument to non-function"),
        ("{{ nil }}", "nil is not a command"),
        ("{{ len }}", "wrong number of args for len: want 1 got 0"),
        ("{{ not 1 2 }}", "wrong number of args for not: want 1 got 2"),
        ("{{ 1 | lt 2 3 }}", "wrong number of args for lt: want 2 got 3"),
        ("{{ eq 1 }}", "wrong number of args for eq: want at least 2 got 1"),
        ("{{ (.a }}", "unclosed left paren"),
        ("{{ .a) }}", "unexpected ')'"),
        ('{{ "abc }}', "unterminated quoted string"),
        ("{{ `abc }}", "unterminated raw quoted string"),
        ('{{ "\\q" }}', "invalid escape \\q"),
        ("{{ 'ab' }}", "bad character constant"),
        ("{{ 1abc }}", "bad number syntax"),
        ("{{ 1i }}", "bad number syntax"),
        ("{{ @ }}", "unexpected '@'"),
        ('{{ "a".x }}', "unexpected . after term"),
        ("{{/* never closed }}", "unclosed comment"),
        ("{{/* c */ }}", "comment ends before closing delimiter"),
        ("{{ /* c */ }}", "unexpected '/'"),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{ $a, $b := .l }}", "too many declarations in command"),
        ("{{ range $a, $b, $c := .l }}{{ end }}", "too many declarations in range"),
        ('{{ define "x" }}{{ end }}', "{{define}} is not supported"),
        ('{{ template "x" }}', "{{template}} is not supported"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template(source)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_syntax_error_position() -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template("hello\nworld {{ foo }}")
    assert (info.value.line, info.value.column) == (2, 10)
    assert str(info.value) == "function 'foo' not defined (line 2, column 10)"


# -------------------------------------------------------------- public API


def test_values_are_never_templates() -> None:
    data = {"v": "{{ .secret }}", "secret": "S", "o": {"x": "{{ .secret }}"}}
    assert render("{{ .v }}", data) == "{{ .secret }}"
    assert render('{{ printf "%s" .v }}{{ print .v }}', data) == "{{ .secret }}{{ .secret }}"
    assert render("{{ .o }}", data) == '{"x":"{{ .secret }}"}'
    assert render_value({"p": "{{ .v }}", "q": "[{{ .v }}]"}, data) == {
        "p": "{{ .secret }}",
        "q": "[{{ .secret }}]",
    }


def test_compile_is_cached_and_fast_path() -> None:
    source = "Hi {{ .s }}"
    assert compile_template(source) is compile_template(source)
    assert isinstance(compile_template(source), Template)
    assert compile_template(source).source == source
    text = "no actions here, just } and { braces"
    assert render(text, {}) is text
    assert compile_template(text).render({}) == text
    assert compile_template("{{/* only a comment */}}").render({}) == ""


def test_template_is_reusable_and_stateless() -> None:
    tpl = compile_template("{{ $x := .v }}{{ range .l }}{{ $x }}{{ end }}")
    assert tpl.render({"v": "a", "l": [1, 2]}) == "aa"
    assert tpl.render({"v": "b", "l": [1]}) == "b"


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("plain", set()),
        ("{{ .a }} {{ .b.c }} {{ $.d.e }}", {"a", "b", "d"}),
        ("{{ range .items }}{{ .name }}{{ $.title }}{{ end }}", {"items", "title"}),
        ("{{ with .o }}{{ .inner }}{{ else }}{{ .fallback }}{{ end }}", {"o", "fallback"}),
        ("{{ if .x }}{{ .y }}{{ else }}{{ .z }}{{ end }}", {"x", "y", "z"}),
        ('{{ index . "key-with-dash" }} {{ printf "%s" (len .p) }}', {"key-with-dash", "p"}),
        ("{{ $v := .a }}{{ $v.not_root }}", {"a"}),
    ],
)
def test_variables(source: str, names: set[str]) -> None:
    assert compile_template(source).variables() == names


def test_render_value_structures() -> None:
    body = {
        "prompt": "Draw {{ .prompt }}",
        "size": "1024x1024",
        "n": 1,
        "ok": True,
        "none": None,
        "{{ .key }}": "keys are untouched",
        "nested": [{"text": "{{ .prompt }}!"}, 2.5],
    }
    assert render_value(body, {"prompt": "a cat"}) == {
        "prompt": "Draw a cat",
        "size": "1024x1024",
        "n": 1,
        "ok": True,
        "none": None,
        "{{ .key }}": "keys are untouched",
        "nested": [{"text": "a cat!"}, 2.5],
    }
    assert render_value(("a", "{{ .n }}"), {"n": 1}) == ["a", 1]
    assert render_value(7, {}) == 7


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("{{ .v }}", 5),
        ("{{.v}}", 5),
        ("{{- .v -}}", 5),
        ("{{   .v   }}", [1, {"a": 2}]),
        ("{{ .v }}", {"k": [1]}),
        ("{{ .v }}", None),
        ("{{ .v }}", 2.5),
        ("{{ .v }}", "text"),
    ],
)
def test_render_value_single_action_keeps_type(template: str, value: object) -> None:
    assert render_value({"x": template}, {"v": value}) == {"x": value}


def test_render_value_single_action_forms() -> None:
    data = {"v": 5, "o": {"k": [1, 2]}}
    assert render_value("{{ .o.k }}", data) == [1, 2]
    assert render_value("{{ len .o.k }}", data) == 2
    assert render_value(" {{ .v }}", data) == " 5"
    assert render_value("{{ .v }}{{ .v }}", data) == "55"
    assert render_value("{{ $x := .v }}", data) == ""
    with pytest.raises(MissingVariable) as info:
        render_value({"a": ["{{ .absent }}"]}, data)
    assert info.value.name == "absent"


# ---------------------------------------------------------------- properties

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDENTIFIER = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_letters + "_你名"),
    st.text(alphabet=string.ascii_letters + string.digits + "_字", max_size=12),
)
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text().filter(lambda s: "{{" not in s)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
TRICKY_TEXT = st.text() | st.sampled_from(
    ["{{ .x }}", "{{", "}}", "{{- .v -}}", "\\", '"', "`", "{{/* c */}}", "$", "你好 {{ .v }}"]
)


@FAST
@given(value=TRICKY_TEXT)
def test_property_values_are_inserted_literally(value: str) -> None:
    assert render("A{{ .v }}B", {"v": value, "x": "X"}) == "A" + value + "B"


@FAST
@given(name=IDENTIFIER)
def test_property_absent_names_raise_missing_variable(name: str) -> None:
    data = {"present_value": 1}
    if name in data:
        return
    with pytest.raises(MissingVariable) as info:
        render("{{ ." + name + " }}", data)
    assert info.value.name == name


@FAST
@given(value=JSON_VALUES)
def test_property_render_value_without_actions_is_identity(value: object) -> None:
    assert render_value(value, {"x": 1}) == value
