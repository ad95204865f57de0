"""Go ``text/template`` rendering for prompt and request-body templates.

Templates (strategy system prompts, instruction messages, request bodies) use Go's
``text/template`` syntax. A source is parsed once (cached by source string) into
closures that render it; data values are never parsed, so a value containing
``{{ .x }}`` is output literally.

Supported: text, actions and ``{{-``/``-}}`` trimming, comments, field chains
(``.a.b``, ``$.a``, ``$x.a``, ``(pipeline).a``), variables (``:=`` and ``=``),
``if``/``else if``/``with``/``else with``/``range``/``else``/``break``/``continue``,
pipelines, parentheses, Go literals (no complex numbers) and the builtins
``and or not eq ne lt le gt ge len index print printf println``.

Deliberate differences from Go:

* A missing map key, or a field of a non-map, raises ``MissingVariable`` everywhere,
  conditions included (Go's ``missingkey=error``). ``index`` is the optional lookup:
  it yields nil for an absent key, as in Go.
* A key whose value is None renders as an empty string (Go prints ``<no value>``);
  ``print``/``printf`` show ``<nil>`` like Go's fmt.
* Dicts and lists render as compact JSON (also through ``print`` and ``%v``).
* JSON integers stay integers: ``{{ .n }}`` prints ``12345678`` where Go, whose JSON
  numbers are float64, prints ``1.2345678e+07``. Floats print like Go's ``%v``
  (``2.0`` -> ``2``, ``1e6`` -> ``1e+06``). Comparisons mix int and float freely.
* ``printf`` is lenient: ``%s`` takes any value, ``%d`` integral floats, ``%f``/``%e``/
  ``%g`` ints.
* Wrong argument counts, arguments to a non-function and non-function pipeline
  stages are compile-time errors rather than execution-time ones.
* Not supported: ``define``/``template``/``block``, custom functions, ``slice``,
  ``html``, ``js``, ``urlquery``, ``call``, complex numbers.

As in Go, ``len`` of a string counts UTF-8 bytes, ``index`` of a string yields a byte,
maps range in sorted key order and comparing lists or maps with ``eq`` is an error.

Render errors carry ``line``/``column`` of the failing action; ``MissingVariable``
also has ``name``, the field path as written (``.a.b`` -> ``a.b``, ``$v.x`` ->
``$v.x``), up to the first absent key.
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "MissingVariable",
    "Template",
    "TemplateError",
    "TemplateSyntaxError",
    "compile_template",
    "render",
    "render_value",
]


class TemplateSyntaxError(ValueError):
    """The template source is malformed."""

    def __init__(self, message: str, source: str, pos: int) -> None:
        self.message, self.pos = message, pos
        self.line, self.column = _line_col(source, pos)
        super().__init__(f"{message} (line {self.line}, column {self.column})")


class TemplateError(Exception):
    """Rendering failed: bad builtin arguments, index out of range, ..."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.pos: int | None = None
        self.line: int | None = None
        self.column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.message} (line {self.line}, column {self.column})"


class MissingVariable(TemplateError, KeyError):
    """The data has no value for a field the template reads."""

    def __init__(self, name: str) -> None:
        super().__init__(f"missing template variable {name!r}")
        self.name = name
        self.args = (name,)  # like KeyError, the key is the argument

    def __str__(self) -> str:
        return self.message


def _line_col(source: str, pos: int) -> tuple[int, int]:
    return source.count("\n", 0, pos) + 1, pos - source.rfind("\n", 0, pos)


# ------------------------------------------------------------------------- lexer

_SPACES = " \t\r\n"
_SPACE_CHARS = frozenset(_SPACES)
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"})
_LITERAL_WORDS = {"true": ("bool", True), "false": ("bool", False), "nil": ("nil", None)}
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX_SIZES = {"x": 2, "u": 4, "U": 8}
_UNTERMINATED = {'"': "quoted string", "'": "character constant", "`": "raw quoted string"}
# One token inside an action (used while parsing only).
_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\n]+)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<char>'(?:[^'\\\n]|\\.)*')
    | (?P<raw>`[^`]*`)
    | (?P<number>[+-]?\.?[0-9](?:[\w.]|(?<=[eEpP])[+-])*)
    | (?P<field>\.\w*)
    | (?P<var>\$\w*)
    | (?P<word>\w+)
    | (?P<declare>:=)
    | (?P<punct>[|(),=])""",
    re.VERBOSE,
)
_PUNCTUATION = {"|": "pipe", "(": "lparen", ")": "rparen", ",": "comma", "=": "assign"}


class _Tok(NamedTuple):
    kind: str
    value: Any
    pos: int
    text: str


class _Action(NamedTuple):
    tokens: list[_Tok]
    pos: int  # offset of the opening "{{"
    end: int  # offset of the closing delimiter


def _unquote(body: str, quote: str) -> str:
    """Decode Go escapes (``\\n``, ``\\x41``, ``\\u00e9``, ``\\101``); bytes join as UTF-8."""
    if "\\" not in body:
        return body
    out, i = bytearray(), 0
    while i < len(body):
        ch, esc = body[i], body[i + 1 : i + 2]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
        elif esc in _ESCAPES or esc in ("\\", quote):
            out += _ESCAPES.get(esc, esc).encode()
            i += 2
        elif esc in _HEX_SIZES:
            digits = body[i + 2 : i + 2 + _HEX_SIZES[esc]]
            if len(digits) != _HEX_SIZES[esc] or not all(d in string.hexdigits for d in digits):
                raise ValueError(f"invalid escape \\{esc}{digits} in {body!r}")
            out += bytes([int(digits, 16)]) if esc == "x" else chr(int(digits, 16)).encode()
            i += 2 + len(digits)
        elif esc and esc in "0123":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise ValueError(f"invalid escape \\{digits} in {body!r}")
            out.append(int(digits, 8))
            i += 4
        else:
            raise ValueError(f"invalid escape \\{esc} in {body!r}")
    return out.decode("utf-8", "replace")


def _number_value(text: str) -> int | float:
    """A Go number literal as int or float (complex numbers are not supported)."""
    body = text.lstrip("+-").lower()
    try:
        if body.startswith("0x"):
            is_float = "." in body or "p" in body
            return float.fromhex(text.replace("_", "")) if is_float else int(text, 16)
        if "." in body or "e" in body:
            return float(text)
        if body[:1] == "0" and body[1:2].isdigit():
            return int(text, 8)  # a leading 0 means octal
        return int(text, 0)
    except ValueError:
        raise ValueError(f"bad number syntax: {text!r}") from None


def _literal(kind: str, text: str) -> tuple[str, Any]:
    """A literal token's kind and value; ValueError when malformed."""
    if kind == "number":
        return kind, _number_value(text)
    if kind == "raw":
        return "string", text[1:-1].replace("\r", "")
    value = _unquote(text[1:-1], text[0])
    if kind == "string":
        return kind, value
    if len(value) != 1:
        raise ValueError(f"bad character constant: {text}")
    return "number", ord(value)  # a rune is an integer, as in Go


class _Lexer:
    """Splits the source into text pieces and one token list per action."""

    def __init__(self, source: str) -> None:
        self.src, self.size = source, len(source)

    def error(self, message: str, pos: int) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, self.src, pos)

    def pieces(self) -> list[str | _Action]:
        src, pos = self.src, 0
        out: list[str | _Action] = []
        while pos < self.size:
            start = src.find("{{", pos)
            if start < 0:
                out.append(src[pos:])
                break
            text, inner = src[pos:start], start + 2
            if src[inner : inner + 1] == "-" and src[inner + 1 : inner + 2] in _SPACE_CHARS:
                text, inner = text.rstrip(_SPACES), inner + 2  # "{{- " trims before
            if text:
                out.append(text)
            if src.startswith("/*", inner):
                pos, trim = self.comment(inner, start)
            else:
                action, pos, trim = self.action(inner, start)
                out.append(action)
            if trim:  # " -}}" trims after
                while pos < self.size and src[pos] in _SPACES:
                    pos += 1
        return out

    def comment(self, pos: int, start: int) -> tuple[int, bool]:
        end = self.src.find("*/", pos + 2) + 2
        if end == 1:
            raise self.error("unclosed comment", start)
        if self.src.startswith("}}", end):
            return end + 2, False
        if self.src[end : end + 1] in _SPACE_CHARS and self.src.startswith("-}}", end + 1):
            return end + 4, True
        raise self.error("comment ends before closing delimiter", end)

    def action(self, pos: int, start: int) -> tuple[_Action, int, bool]:
        tokens: list[_Tok] = []
        while not self.src.startswith("}}", pos):
            match = _TOKEN.match(self.src, pos)
            if match is None:
                ch = self.src[pos : pos + 1]
                if not ch:
                    raise self.error("unclosed action", start)
                what = _UNTERMINATED.get(ch)
                raise self.error(f"unterminated {what}" if what else f"unexpected {ch!r}", pos)
            kind, text = match.lastgroup or "", match.group()
            if kind == "space" and self.src.startswith("-}}", match.end()):
                return _Action(tokens, start, match.end()), match.end() + 3, True
            tokens.append(self.token(kind, text, pos))
            pos = match.end()
        return _Action(tokens, start, pos), pos + 2, False

    def token(self, kind: str, text: str, pos: int) -> _Tok:
        value: Any = text
        if kind in ("number", "string", "char", "raw"):
            try:
                kind, value = _literal(kind, text)
            except ValueError as exc:
                raise self.error(str(exc), pos) from None
        elif kind == "field":
            kind, value = ("field", text[1:]) if len(text) > 1 else ("dot", ".")
        elif kind == "word":
            kind = "keyword" if text in _KEYWORDS else "ident"
            kind, value = _LITERAL_WORDS.get(text, (kind, text))
        elif kind == "punct":
            kind = _PUNCTUATION[text]
        return _Tok(kind, value, pos, text)


# ------------------------------------------------------------------ values


def _format_float(value: float) -> str:
    """Go's ``%v`` of a float64: shortest digits; exponent form when exp < -4 or >= 6."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp_text or 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    exponent = point - 1
    if not digits:
        return sign + "0"
    if exponent < -4 or exponent >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _format(value: Any) -> str:
    """Go's ``%v``, except that dicts and lists are compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if value is None:
        return "<nil>"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def _to_text(value: Any) -> str:
    """What an action outputs for a value."""
    if type(value) is str:
        return value
    return "" if value is None else _format(value)


_GO_TYPES = ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string"))


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return next((name for kind, name in _GO_TYPES if isinstance(value, kind)), "interface {}")


def _kind(value: Any) -> str:
    """A value's comparison class; as in Go, only values of one class compare."""
    if value is None or isinstance(value, bool):
        return "nil" if value is None else "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- builtins


def _eq(first: Any, *others: Any) -> bool:
    """Whether ``first`` equals any of ``others``; nil is unequal to everything else."""
    kind = _kind(first)
    for other in others:
        if kind != _kind(other) and None not in (first, other):
            raise TemplateError(f"incompatible types for comparison: {_go_type(first)} and {_go_type(other)}")
        if kind == "other" and other is not None:
            raise TemplateError(f"non-comparable type {_go_type(first)}")
        if kind == _kind(other) and first == other:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    if _kind(a) not in ("number", "string") or _kind(b) not in ("number", "string"):
        raise TemplateError(f"invalid type for comparison: {_go_type(a)} and {_go_type(b)}")
    if _kind(a) != _kind(b):
        raise TemplateError(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
    return a < b


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (list, tuple, Mapping)):
        return len(value)
    raise TemplateError(f"len of {'nil pointer' if value is None else 'type ' + _go_type(value)}")


def _index(item: Any, *keys: Any) -> Any:
    """``index x k1 k2`` is x[k1][k2]; an absent map key gives nil."""
    for key in keys:
        if isinstance(item, Mapping):
            try:
                item = item.get(key)
            except TypeError:
                raise TemplateError(f"unhashable map key of type {_go_type(key)}") from None
            continue
        if isinstance(item, str):
            item = item.encode("utf-8", "surrogatepass")  # Go indexes a string's bytes
        if not isinstance(item, (list, tuple, bytes)):
            raise TemplateError(f"can't index item of type {_go_type(item)}")
        if not _is_int(key):
            raise TemplateError(f"cannot index slice/array with type {_go_type(key)}")
        if not 0 <= key < len(item):
            raise TemplateError(f"index out of range: {key}")
        item = item[key]
    return item


def _print(*args: Any) -> str:
    """Go's Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_format(arg))
    return "".join(out)


_SPEC = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.DOTALL)
_QUOTE_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}


@functools.lru_cache(maxsize=256)
def _parse_format(fmt: str) -> tuple[str | tuple[str, int, int | None, str], ...]:
    """Split a printf format into literal text and (flags, width, precision, verb)."""
    parts: list[str | tuple[str, int, int | None, str]] = []
    pos = 0
    for spec in _SPEC.finditer(fmt):
        parts.append(fmt[pos : spec.start()])
        flags, width, prec, verb = spec.groups()
        parts.append((flags, int(width or 0), None if prec is None else int(prec or 0), verb))
        pos = spec.end()
    parts.append(fmt[pos:])
    return tuple(part for part in parts if part)


def _printf(fmt: Any, *args: Any) -> str:
    """Go's Sprintf for the common verbs, including its in-band error notes."""
    if not isinstance(fmt, str):
        raise TemplateError(f"printf format must be a string, not {_go_type(fmt)}")
    out, used = [], 0
    for part in _parse_format(fmt):
        if isinstance(part, str) or part[3] == "%":
            out.append("%" if isinstance(part, tuple) else part)
        elif not part[3]:
            out.append("%!(NOVERB)")
        elif used == len(args):
            out.append(f"%!{part[3]}(MISSING)")
        else:
            out.append(_format_arg(args[used], *part))
            used += 1
    if used < len(args):
        out.append(f"%!(EXTRA {', '.join(_bad_verb('', a)[3:-1] for a in args[used:])})")
    return "".join(out)


def _bad_verb(verb: str, arg: Any) -> str:
    return f"%!{verb}(<nil>)" if arg is None else f"%!{verb}({_go_type(arg)}={_format(arg)})"


def _pad(text: str, flags: str, width: int) -> str:
    if len(text) >= width:
        return text
    if "-" in flags or "0" not in flags:
        return text.ljust(width) if "-" in flags else text.rjust(width)
    if text[0] in "+- " and text[1:2].isdigit():  # zeros go after a number's sign
        return text[0] + text[1:].rjust(width - 1, "0")
    return text.rjust(width, "0")


def _go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _QUOTE_ESCAPES:
            out.append("\\" + _QUOTE_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out) + '"'


def _format_arg(arg: Any, flags: str, width: int, prec: int | None, verb: str) -> str:
    """One ``%`` directive; a value the verb cannot format gives Go's ``%!v(type=value)``."""
    try:
        text = _format_verb(arg, flags, prec, verb)
    except (ValueError, OverflowError):
        text = None
    return _bad_verb(verb, arg) if text is None else _pad(text, flags, min(width, 10_000))


def _format_verb(arg: Any, flags: str, prec: int | None, verb: str) -> str | None:
    sign = "+" if "+" in flags else " " if " " in flags else ""
    number = _kind(arg) == "number"
    if verb == "v":
        verb = ("d" if _is_int(arg) else "g") if number else "t" if _kind(arg) == "bool" else "s"
    if verb == "d" and isinstance(arg, float) and arg.is_integer():
        arg = int(arg)
    if verb in "dxX" and _is_int(arg):
        text = format(arg, sign + ("#" if "#" in flags and verb != "d" else "") + verb)
    elif verb in "eEfFgG" and number and math.isfinite(arg):
        if verb in "gG" and prec is None:  # shortest representation, as %v
            text = (sign if arg >= 0 else "") + _format_float(float(arg))
            text = text.upper() if verb == "G" else text
        else:
            text = format(float(arg), sign + ("" if prec is None else f".{prec}") + verb.lower())
            text = text.upper() if verb in "EG" else text
    elif verb in "eEfFgG" and number:
        text = _format_float(arg)
    elif verb == "s":
        text = _format(arg)[:prec] if prec is not None else _format(arg)
    elif verb == "q" and isinstance(arg, str):
        text = _go_quote(arg)
    elif verb in "xX" and isinstance(arg, str):
        text = arg.encode("utf-8", "surrogatepass").hex()
        text = text.upper() if verb == "X" else text
    elif verb == "t" and isinstance(arg, bool) or verb == "T":
        text = _format(arg) if verb == "t" else _go_type(arg)
    else:
        return None
    return text


_BUILTINS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "and": (bool, 1, None),  # and/or are evaluated lazily by _logic
    "or": (bool, 1, None),
    "not": (lambda value: not value, 1, 1),
    "eq": (_eq, 2, None),
    "ne": (lambda a, b: not _eq(a, b), 2, 2),
    "lt": (_lt, 2, 2),
    "le": (_le, 2, 2),
    "gt": (lambda a, b: not _le(a, b), 2, 2),
    "ge": (lambda a, b: not _lt(a, b), 2, 2),
    "len": (_len, 1, 1),
    "index": (_index, 1, None),
    "print": (_print, 0, None),
    "println": (lambda *args: " ".join(map(_format, args)) + "\n", 0, None),
    "printf": (_printf, 1, None),
}


# -------------------------------------------------------------- evaluation
# The parser compiles each node into a closure: expressions are ``f(st, dot)``
# (pipeline stages after the first also take the piped value), statements append
# to ``st.out``.

_Expr = Callable[..., Any]
_Stmt = Callable[["_State", Any], None]
_MISSING: Any = object()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    """Per-render state: output chunks and the variable stack (innermost last)."""

    __slots__ = ("out", "vars")

    def __init__(self, data: Any) -> None:
        self.out: list[str] = []
        self.vars: list[tuple[str, Any]] = [("$", data)]

    def index_of(self, name: str) -> int:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return i
        raise TemplateError(f"undefined variable: {name}")


def _follow(value: Any, fields: tuple[str, ...], prefix: str) -> Any:
    for i, key in enumerate(fields):
        try:
            value = value[key]
        except (KeyError, TypeError, IndexError):
            raise MissingVariable(prefix + ".".join(fields[: i + 1])) from None
    return value


def _located(exc: TemplateError, pos: int) -> TemplateError:
    if exc.pos is None:
        exc.pos = pos
    return exc


def _dot(st: _State, dot: Any) -> Any:
    return dot


def _root(st: _State, dot: Any) -> Any:
    return st.vars[0][1]


def _const(value: Any) -> _Expr:
    return lambda st, dot: value


def _variable(name: str) -> _Expr:
    return lambda st, dot: st.vars[st.index_of(name)][1]


def _fields(base: _Expr, fields: tuple[str, ...], prefix: str) -> _Expr:
    if base is _dot:
        return lambda st, dot: _follow(dot, fields, prefix)
    return lambda st, dot: _follow(base(st, dot), fields, prefix)


def _call(func: Callable[..., Any], args: tuple[_Expr, ...]) -> _Expr:
    def call(st: _State, dot: Any, final: Any = _MISSING) -> Any:
        values = [arg(st, dot) for arg in args]
        if final is not _MISSING:
            values.append(final)
        return func(*values)

    return call


def _logic(stop_on: bool, args: tuple[_Expr, ...]) -> _Expr:
    """``and`` (stop_on=False) / ``or``: evaluate lazily, return the deciding value."""

    def call(st: _State, dot: Any, final: Any = _MISSING) -> Any:
        value = None
        for arg in args:
            value = arg(st, dot)
            if bool(value) == stop_on:
                return value
        return value if final is _MISSING else final

    return call


class _Pipe(NamedTuple):
    run: _Expr
    decls: tuple[str, ...]
    assign: bool


def _pipeline(stages: list[_Expr], decls: tuple[str, ...], assign: bool) -> _Pipe:
    first, rest = stages[0], tuple(stages[1:])
    if not rest and not decls:
        return _Pipe(first, decls, assign)

    def run(st: _State, dot: Any) -> Any:
        value = first(st, dot)
        for stage in rest:
            value = stage(st, dot, value)
        for name in decls:
            if assign:
                st.vars[st.index_of(name)] = (name, value)
            else:
                st.vars.append((name, value))
        return value

    return _Pipe(run, decls, assign)


def _run(body: Iterable[_Stmt], st: _State, dot: Any) -> None:
    for stmt in body:
        stmt(st, dot)


def _text(text: str) -> _Stmt:
    return lambda st, dot: st.out.append(text)


def _output(expr: _Expr, pos: int, silent: bool) -> _Stmt:
    def output(st: _State, dot: Any) -> None:
        try:
            value = expr(st, dot)
        except TemplateError as exc:
            raise _located(exc, pos)
        if not silent:
            st.out.append(_to_text(value))

    return output


def _branch(cond: _Expr, body: list[_Stmt], orelse: list[_Stmt], pos: int, rebind: bool) -> _Stmt:
    """``if`` and ``with``; variables declared inside end with the block."""

    def branch(st: _State, dot: Any) -> None:
        mark = len(st.vars)
        try:
            value = cond(st, dot)
        except TemplateError as exc:
            raise _located(exc, pos)
        if value:
            _run(body, st, value if rebind else dot)
        else:
            _run(orelse, st, dot)
        del st.vars[mark:]

    return branch


def _range_items(value: Any, decls: int) -> Iterable[tuple[Any, Any]]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return enumerate(value)
    if isinstance(value, Mapping):
        try:
            keys = sorted(value)
        except TypeError:
            keys = sorted(value, key=lambda k: (type(k).__name__, str(k)))
        return [(key, value[key]) for key in keys]
    if _is_int(value) and decls < 2:
        return ((i, i) for i in range(value))
    raise TemplateError(f"range can't iterate over {_format(value)}")


def _range(pipe: _Pipe, body: list[_Stmt], orelse: list[_Stmt], pos: int) -> _Stmt:
    decls, assign = pipe.decls, pipe.assign

    def bind(st: _State, top: int, key: Any, elem: Any) -> None:
        """Set ``$elem`` or ``$key, $elem`` for one iteration."""
        for i, (name, value) in enumerate(zip(decls, (elem,) if len(decls) == 1 else (key, elem))):
            slot = st.index_of(name) if assign else top - len(decls) + i
            st.vars[slot] = (name, value)

    def loop(st: _State, dot: Any) -> None:
        mark = len(st.vars)
        try:
            items = _range_items(pipe.run(st, dot), len(decls))
        except TemplateError as exc:
            raise _located(exc, pos)
        top, empty = len(st.vars), True
        try:
            for key, elem in items:
                empty = False
                bind(st, top, key, elem)
                try:
                    _run(body, st, elem)
                except _Continue:
                    pass
                del st.vars[top:]
            if empty:
                _run(orelse, st, dot)
        except _Break:
            pass
        del st.vars[mark:]

    return loop


def _jump(signal: type[Exception]) -> _Stmt:
    def jump(st: _State, dot: Any) -> None:
        raise signal

    return jump


# ------------------------------------------------------------------ parser

_TERMS = {"ident", "dot", "nil", "var", "field", "bool", "number", "string", "lparen"}


class _FuncRef(NamedTuple):
    """A builtin named as an operand; it becomes a call once its arguments are known."""

    name: str


class _Stop(NamedTuple):
    """The ``{{else}}`` or ``{{end}}`` that ended a list."""

    keyword: str
    cursor: _Cursor | None  # the rest of the action; None for an implied {{end}}
    pos: int


def _delim(word: str) -> str:
    return "{{" + word + "}}"


class _Cursor:
    """Reads one action's tokens; past the last one it yields an ``end`` token."""

    def __init__(self, action: _Action) -> None:
        self.tokens, self.i = action.tokens, 0
        self.end = _Tok("end", None, action.end, "}}")

    def peek(self) -> _Tok:
        return self.tokens[self.i] if self.i < len(self.tokens) else self.end

    def next(self) -> _Tok:
        self.i += 1
        return self.tokens[self.i - 1] if self.i <= len(self.tokens) else self.end

    def next_non_space(self) -> _Tok:
        while self.peek().kind == "space":
            self.i += 1
        return self.next()

    def peek_non_space(self) -> _Tok:
        tok = self.next_non_space()
        self.i -= 1
        return tok


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pieces = _Lexer(source).pieces()
        self.i = 0
        self.vars = ["$"]  # variables in scope, for undefined-variable errors
        self.loops = 0  # enclosing ranges, for break/continue
        self.rooted = True  # whether dot is the root data, for Template.variables
        self.names: set[str] = set()
        self.single: tuple[_Expr, int] | None = None  # the output of a one-action template

    def error(self, message: str, pos: int) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, self.source, pos)

    def parse(self) -> list[_Stmt]:
        body, stop = self.parse_list()
        if stop is not None:
            raise self.error(f"unexpected {_delim(stop.keyword)}", stop.pos)
        if len(self.pieces) != 1:
            self.single = None  # only a template that is one action has a raw value
        return body

    def parse_list(self) -> tuple[list[_Stmt], _Stop | None]:
        """Statements up to the next ``{{else}}``/``{{end}}`` or the end of the source."""
        body: list[_Stmt] = []
        while self.i < len(self.pieces):
            piece = self.pieces[self.i]
            self.i += 1
            if isinstance(piece, str):
                body.append(_text(piece))
                continue
            cursor = _Cursor(piece)
            tok = cursor.next_non_space()
            if tok.kind == "keyword" and tok.value in ("else", "end"):
                return body, _Stop(tok.value, cursor, tok.pos)
            body.append(self.parse_action(cursor, tok, piece.pos))
        return body, None

    def parse_action(self, cursor: _Cursor, tok: _Tok, pos: int) -> _Stmt:
        if tok.kind != "keyword":
            cursor.i -= 1
            pipe = self.parse_pipeline(cursor, "command", "end")
            self.single = None if pipe.decls else (pipe.run, pos)
            return _output(pipe.run, pos, silent=bool(pipe.decls))
        if tok.value in ("if", "with", "range"):
            return self.parse_control(tok.value, cursor, pos)
        if tok.value not in ("break", "continue"):
            raise self.error(f"{_delim(tok.value)} is not supported", tok.pos)
        if not self.loops:
            raise self.error(f"{_delim(tok.value)} outside {_delim('range')}", tok.pos)
        self.expect_end(cursor, tok.value)
        return _jump(_Break if tok.value == "break" else _Continue)

    def parse_control(self, kind: str, cursor: _Cursor, pos: int) -> _Stmt:
        mark, rooted = len(self.vars), self.rooted
        pipe = self.parse_pipeline(cursor, kind, "end")
        self.loops += kind == "range"
        self.rooted = rooted and kind == "if"
        body, stop = self.parse_list()
        self.rooted = rooted
        orelse: list[_Stmt] = []
        if stop is not None and stop.keyword == "else" and stop.cursor is not None:
            else_cursor = stop.cursor
            after_else = else_cursor.peek_non_space()
            if kind != "range" and after_else.kind == "keyword" and after_else.value == kind:
                # {{else if b}}..{{end}} is {{else}}{{if b}}..{{end}}{{end}}: the nested
                # chain consumes the one {{end}}
                else_cursor.next()
                orelse = [self.parse_control(kind, else_cursor, after_else.pos)]
                stop = _Stop("end", None, after_else.pos)
            else:
                self.expect_end(else_cursor, "else")
                orelse, stop = self.parse_list()
        if stop is None:
            raise self.error(f"unexpected EOF: {_delim(kind)} without {_delim('end')}", pos)
        if stop.keyword != "end":
            raise self.error(f"expected {_delim('end')}; found {_delim('else')}", stop.pos)
        if stop.cursor is not None:
            self.expect_end(stop.cursor, "end")
        self.loops -= kind == "range"
        del self.vars[mark:]
        if kind == "range":
            return _range(pipe, body, orelse, pos)
        return _branch(pipe.run, body, orelse, pos, rebind=kind == "with")

    def expect_end(self, cursor: _Cursor, context: str) -> None:
        tok = cursor.next_non_space()
        if tok.kind != "end":
            raise self.error(f"unexpected {tok.text!r} in {context}", tok.pos)

    def parse_pipeline(self, cursor: _Cursor, context: str, end: str) -> _Pipe:
        decls, assign = self.parse_decls(cursor, context)
        stages: list[_Expr] = []
        while True:
            args = self.parse_command(cursor, context, end, len(stages))
            stages.append(self.build_stage(args, len(stages)))
            if cursor.next_non_space().kind == end:
                return _pipeline(stages, decls, assign)

    def parse_decls(self, cursor: _Cursor, context: str) -> tuple[tuple[str, ...], bool]:
        """``$x :=``, ``$x =`` or (in range) ``$i, $v :=``; nothing when absent."""
        start = cursor.i
        names: list[_Tok] = []
        while True:
            tok = cursor.next_non_space()
            if tok.kind != "var":
                if names:
                    raise self.error(f"{context} can only initialize variables", tok.pos)
                break
            sep = cursor.next_non_space()
            if sep.kind in ("declare", "assign"):
                assign = sep.kind == "assign"
                return self.declare([*names, tok], assign), assign
            if sep.kind != "comma":  # "$x" starts an operand, not a declaration
                break
            if context != "range" or names:
                raise self.error(f"too many declarations in {context}", sep.pos)
            names.append(tok)
        cursor.i = start
        return (), False

    def declare(self, names: list[_Tok], assign: bool) -> tuple[str, ...]:
        for tok in names:
            if assign and tok.value not in self.vars:
                raise self.error(f"undefined variable {tok.value!r}", tok.pos)
        if not assign:
            self.vars.extend(tok.value for tok in names)
        return tuple(tok.value for tok in names)

    def parse_command(self, cursor: _Cursor, context: str, end: str, stage: int) -> list:
        """Space-separated operands, each paired with its first token, up to ``|`` or end."""
        args: list[tuple[Any, _Tok]] = []
        while True:
            tok = cursor.peek_non_space()
            if tok.kind in _TERMS:
                args.append((self.parse_operand(cursor), tok))
            elif tok.kind in ("pipe", end) and args:
                return args
            elif tok.kind in ("pipe", end):
                what = "missing command after '|'" if stage else f"missing value for {context}"
                raise self.error(what, tok.pos)
            elif tok.kind == "end":
                raise self.error("unclosed left paren", tok.pos)
            else:
                raise self.error(f"unexpected {tok.text!r} in {context}", tok.pos)
            after = cursor.peek()
            if after.kind not in ("space", "pipe", end):
                raise self.error(f"unexpected {after.text!r} in operand", after.pos)

    def parse_operand(self, cursor: _Cursor) -> _Expr | _FuncRef:
        tok = cursor.next_non_space()
        if tok.kind == "lparen":
            pipe = self.parse_pipeline(cursor, "parenthesized pipeline", "rparen")
        fields: list[str] = [tok.value] if tok.kind == "field" else []
        while cursor.peek().kind == "field":
            fields.append(cursor.next().value)
        if tok.kind == "field":
            if self.rooted:
                self.names.add(fields[0])
            return _fields(_dot, tuple(fields), "")
        if tok.kind == "var":
            if tok.value not in self.vars:
                raise self.error(f"undefined variable {tok.value!r}", tok.pos)
            base = _root if tok.value == "$" else _variable(tok.value)
            if not fields:
                return base
            if tok.value == "$":
                self.names.add(fields[0])
            return _fields(base, tuple(fields), "" if tok.value == "$" else tok.value + ".")
        if tok.kind == "lparen":
            return _fields(pipe.run, tuple(fields), "") if fields else pipe.run
        if fields:
            raise self.error(f"unexpected . after term {tok.text!r}", tok.pos)
        if tok.kind == "dot":
            return _dot
        if tok.kind != "ident":
            return _const(tok.value)
        if tok.value not in _BUILTINS:
            raise self.error(f"function {tok.value!r} not defined", tok.pos)
        return _FuncRef(tok.value)

    def build_stage(self, args: list[tuple[Any, _Tok]], index: int) -> _Expr:
        """A pipeline stage: a builtin call, or (first stage only) a single operand."""
        head = args[0][1]
        if isinstance(args[0][0], _FuncRef):
            return self.make_call(args[0][0].name, args[1:], head, piped=index > 0)
        if index:
            raise self.error(f"non executable command in pipeline stage {index + 1}", head.pos)
        if head.kind == "nil":
            raise self.error("nil is not a command", head.pos)
        if len(args) > 1:
            raise self.error(f"can't give argument to non-function {head.text!r}", head.pos)
        return args[0][0]

    def make_call(self, name: str, args: list[tuple[Any, _Tok]], head: _Tok, piped: bool) -> _Expr:
        func, low, high = _BUILTINS[name]
        count = len(args) + piped
        if count < low or (high is not None and count > high):
            want = f"at least {low}" if high is None else str(low)
            raise self.error(f"wrong number of args for {name}: want {want} got {count}", head.pos)
        exprs = tuple(
            self.make_call(arg.name, [], tok, False) if isinstance(arg, _FuncRef) else arg for arg, tok in args
        )
        reads_root = exprs and ((exprs[0] is _dot and self.rooted) or exprs[0] is _root)
        if name == "index" and reads_root and len(args) > 1 and args[1][1].kind == "string":
            self.names.add(args[1][1].value)  # index . "key" reads a root field
        if name in ("and", "or"):
            return _logic(name == "or", exprs)
        return _call(func, exprs)


# -------------------------------------------------------------- public API


class Template:
    """A compiled template; immutable and safe to share between requests."""

    __slots__ = ("_body", "_names", "_single", "_static", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._static: str | None = None  # the output when there are no actions
        self._single: tuple[_Expr, int] | None = None  # (expr, pos) of a one-action template
        self._body: list[_Stmt] = []
        self._names: frozenset[str] = frozenset()
        if "{{" not in source:
            self._static = source
            return
        parser = _Parser(source)
        self._body = parser.parse()
        self._names, self._single = frozenset(parser.names), parser.single
        texts = [piece for piece in parser.pieces if isinstance(piece, str)]
        if len(texts) == len(parser.pieces):  # comments only
            self._static = "".join(texts)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, data: Any) -> str:
        if self._static is not None:
            return self._static
        st = _State(data)
        try:
            _run(self._body, st, data)
        except TemplateError as exc:
            raise self._locate(exc)
        return "".join(st.out)

    def _value(self, data: Any) -> Any:
        """The raw value of a template that is exactly one action, else the rendered text."""
        if self._single is None:
            return self.render(data)
        expr, pos = self._single
        try:
            return expr(_State(data), data)
        except TemplateError as exc:
            raise self._locate(_located(exc, pos))

    def variables(self) -> set[str]:
        """Root data fields the template reads (best effort: ``.x``, ``$.x``, ``index . "x"``)."""
        return set(self._names)

    def _locate(self, exc: TemplateError) -> TemplateError:
        if exc.pos is not None and exc.line is None:
            exc.line, exc.column = _line_col(self.source, exc.pos)
        return exc


@functools.lru_cache(maxsize=2048)
def compile_template(source: str) -> Template:
    """Parse a template once; later calls with the same source reuse it."""
    return Template(source)


def render(source: str, data: Any) -> str:
    if "{{" not in source:
        return source
    return compile_template(source).render(data)


def render_value(value: Any, data: Any) -> Any:
    """Render every string in a JSON-like value; dict keys and other scalars are kept.

    A string that is exactly one action, like ``"{{ .n }}"``, becomes the raw value,
    so numbers, lists and objects keep their type.
    """
    if isinstance(value, str):
        return compile_template(value)._value(data) if "{{" in value else value
    if isinstance(value, Mapping):
        return {key: render_value(item, data) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_value(item, data) for item in value]
    return value
