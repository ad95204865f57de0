"""Behaviour and fault switches: their names, parsing and merging.

A request's effective switches are the server defaults overridden, in increasing
priority, by ``x-sim-<name>`` request headers, by ``[[sim name=value ...]]`` directives
found in the request body, and by the next step of a script (see ``server.py``).
Names accept ``-`` or ``_`` (``x-sim-latency-ms`` is ``latency_ms``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import orjson


class RequestError(ValueError):
    """A request the simulator rejects with 400 in the provider's own error format."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class SwitchError(RequestError):
    """An unknown switch name or a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Switches:
    latency_ms: float = 0.0  # delay before the response headers
    ttft_ms: float = 0.0  # stream: delay after the headers, before the first frame
    chunks: int = 8  # stream: number of content deltas
    chunk_interval_ms: float = 0.0  # stream: delay between content deltas
    status: int | None = None  # answer with this HTTP status and the format's error body
    malformed: bool = False  # body (or one stream frame) that is not valid JSON
    malformed_after: int = 1  # stream: content chunks before the malformed frame
    disconnect_after: int | None = None  # stream: close after N content chunks; else at once
    error_after: int | None = None  # stream: in-stream error event after N content chunks
    reply: str | None = None  # reply text instead of the echo
    usage: bool = True  # False: leave usage out of the response / stream
    cached_tokens: int = 0
    cache_creation_tokens: int = 0  # Anthropic cache_creation_input_tokens
    reasoning_tokens: int = 0
    job_duration_ms: float = 300.0  # job API: time from submit to the final status
    job_fail: bool = False  # job API: the job ends "failed"
    job_output_tokens: int = 1000  # job API: output tokens a succeeded job reports
    retry_after: float | None = None  # seconds: Retry-After header on error statuses


DEFAULT = Switches()
NAMES: frozenset[str] = frozenset(f.name for f in fields(Switches))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"not an integer: {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(str(value).strip())


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    return float(str(value).strip()) if isinstance(value, str) else float(value)


def _non_negative(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        result = convert(value)
        if result < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return result

    return check


def _positive_int(value: Any) -> int:
    result = _to_int(value)
    if result < 1:
        raise ValueError(f"must be >= 1, got {value!r}")
    return result


def _http_status(value: Any) -> int:
    result = _to_int(value)
    if not 100 <= result <= 599:
        raise ValueError(f"not an HTTP status: {value!r}")
    return result


_COERCE: dict[str, Callable[[Any], Any]] = {
    "latency_ms": _non_negative(_to_float),
    "ttft_ms": _non_negative(_to_float),
    "chunks": _positive_int,
    "chunk_interval_ms": _non_negative(_to_float),
    "status": _http_status,
    "malformed": _to_bool,
    "malformed_after": _non_negative(_to_int),
    "disconnect_after": _non_negative(_to_int),
    "error_after": _non_negative(_to_int),
    "reply": str,
    "usage": _to_bool,
    "cached_tokens": _non_negative(_to_int),
    "cache_creation_tokens": _non_negative(_to_int),
    "reasoning_tokens": _non_negative(_to_int),
    "job_duration_ms": _non_negative(_to_float),
    "job_fail": _to_bool,
    "job_output_tokens": _non_negative(_to_int),
    "retry_after": _non_negative(_to_float),
}
assert set(_COERCE) == NAMES


def normalize_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in NAMES:
        raise SwitchError(f"unknown simulator switch {name!r}")
    return key


def coerce(name: str, value: Any) -> tuple[str, Any]:
    """Validate one switch; ``None`` (JSON null) means the built-in default."""
    key = normalize_name(name)
    if value is None:
        return key, getattr(DEFAULT, key)
    try:
        return key, _COERCE[key](value)
    except (TypeError, ValueError) as exc:
        raise SwitchError(f"bad value for simulator switch {key!r}: {exc}") from None


def parse_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a mapping of switches (script step, JSON object) into typed overrides."""
    if not isinstance(values, Mapping):
        raise SwitchError(f"switches must be an object, got {type(values).__name__}")
    return dict(coerce(name, value) for name, value in values.items())


def parse_script(steps: Any) -> list[dict[str, Any]]:
    """Validate a script: a list of switch objects (``{"steps": [...]}`` is accepted too)."""
    if isinstance(steps, Mapping) and "steps" in steps:
        steps = steps["steps"]
    if not isinstance(steps, list):
        raise SwitchError("a script is a JSON list of switch objects")
    return [parse_mapping(step) for step in steps]


def make_defaults(values: Mapping[str, Any]) -> Switches:
    """Server defaults; ``None`` values mean "not given" (handy for CLI flags)."""
    given = {name: value for name, value in values.items() if value is not None}
    return replace(DEFAULT, **parse_mapping(given))


# --- request headers -----------------------------------------------------------------

HEADER_PREFIX = b"x-sim-"


def header_overrides(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, Any] | None:
    """Switches from ``x-sim-<name>`` headers, or None when there are none."""
    found: dict[str, Any] | None = None
    for name, value in raw_headers:
        if name[:6].lower() == HEADER_PREFIX:
            key, parsed = coerce(name[6:].decode("latin-1"), value.decode("utf-8", "replace"))
            if found is None:
                found = {}
            found[key] = parsed
    return found


# --- directives in the request body ----------------------------------------------------

DIRECTIVE_MARK = b"[[sim "
_PAIR = re.compile(r"""([A-Za-z_][\w-]*)=("[^"]*"|'[^']*'|\S+)""")


def _directive_text(segment: bytes) -> str:
    """The directive as the sender wrote it: undo JSON string escaping when possible."""
    try:
        decoded = orjson.loads(b'"' + segment + b'"')
        if isinstance(decoded, str):
            return decoded
    except orjson.JSONDecodeError:
        pass
    return segment.decode("utf-8", "replace")


def parse_directive(text: str) -> dict[str, Any]:
    """``key=value key2="two words"`` -> typed overrides."""
    found: dict[str, Any] = {}
    for match in _PAIR.finditer(text):
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        key, parsed = coerce(match.group(1), value)
        found[key] = parsed
    return found


def directive_overrides(raw: bytes) -> dict[str, Any] | None:
    """Switches from every ``[[sim ...]]`` in the raw body (later ones win), or None.

    Callers check ``DIRECTIVE_MARK in raw`` first, so bodies without one cost one scan.
    """
    found: dict[str, Any] | None = None
    start = raw.find(DIRECTIVE_MARK)
    while start >= 0:
        begin = start + len(DIRECTIVE_MARK)
        end = raw.find(b"]]", begin)
        if end < 0:
            break
        if found is None:
            found = {}
        found.update(parse_directive(_directive_text(raw[begin:end])))
        start = raw.find(DIRECTIVE_MARK, end + 2)
    return found


def merge(defaults: Switches, *layers: dict[str, Any] | None) -> Switches:
    """Apply override layers in order (later wins); the defaults object when none apply."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return replace(defaults, **merged) if merged else defaults
