"""Read, expand and validate the YAML file; every error is reported with its path."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aigate.config.schema import AppCfg, Config, InstructionCfg, PlatformCfg, StrategyCfg

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists each problem as ``path: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def format_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def expand_env(value: Any, env: dict[str, str], path: tuple = (), errors: list | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string scalar.

    Expansion happens after YAML parsing, so a variable's value is data and can never
    change the structure of the file.
    """
    errors = errors if errors is not None else []
    if isinstance(value, dict):
        return {k: expand_env(v, env, (*path, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, (*path, i), errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        errors.append(f"{format_path(path)}: environment variable {name} is not set")
        return ""

    return _VAR.sub(sub, value)


def _pydantic_errors(exc: ValidationError, prefix: tuple = ()) -> list[str]:
    errors = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "field required"
        errors.append(f"{format_path((*prefix, *loc))}: {msg}")
    return errors


def _duplicates(items: list, key: str, path: str) -> list[str]:
    seen: set = set()
    errors = []
    for i, item in enumerate(items):
        value = getattr(item, key)
        if value in seen:
            errors.append(f"{path}[{i}].{key}: duplicate {key} '{value}'")
        seen.add(value)
    return errors


def _template_errors(path: str, source: str | None) -> list[str]:
    if not source or "{{" not in source:
        return []
    from aigate.gotemplate import TemplateSyntaxError, compile_template

    try:
        compile_template(source)
    except TemplateSyntaxError as exc:
        return [f"{path}: template error: {exc}"]
    return []


def _templates_in(path: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return _template_errors(path, value)
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _templates_in(f"{path}.{k}", v)]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _templates_in(f"{path}[{i}]", v)]
    return []


def route_errors(path: str, model: str, names: list[str], platforms: dict[str, PlatformCfg]) -> list[str]:
    """A strategy or instruction must name known platforms, one of which serves its model."""
    errors = []
    for i, name in enumerate(names):
        if name not in platforms:
            errors.append(f"{path}.platforms[{i}]: unknown platform '{name}'")
    candidates = [platforms[n] for n in names if n in platforms] if names else platforms.values()
    if not any(model in p.models for p in candidates):
        errors.append(f"{path}.model: unknown model '{model}': no platform of it serves it")
    return errors


def strategy_errors(path: str, s: StrategyCfg, platforms: dict[str, PlatformCfg], assets: set[str]) -> list[str]:
    errors = route_errors(path, s.model, s.platforms, platforms)
    for i, model in enumerate(s.fallback_models):
        if not any(model in p.models for p in platforms.values()):
            errors.append(f"{path}.fallback_models[{i}]: unknown model '{model}'")
    if s.cost and s.cost.asset not in assets:
        errors.append(f"{path}.cost.asset: unknown asset '{s.cost.asset}'")
    if (
        s.cost
        and s.cost.usage_based
        and s.cost.hold is None
        and (s.module != "chat" or not isinstance(s.params.get("max_tokens"), int))
    ):
        errors.append(
            f"{path}.cost.hold: a usage-based cost needs a hold, or params.max_tokens "
            f"to compute it from (chat strategies)"
        )
    if s.module != "chat" and s.request is None:
        errors.append(f"{path}.request: required for module '{s.module}'")
    errors += _template_errors(f"{path}.system_prompt", s.system_prompt)
    errors += _templates_in(f"{path}.request", s.request)
    if s.custom_response:
        import jmespath

        for field, expr in s.custom_response.items():
            try:
                jmespath.compile(expr)
            except Exception as exc:  # jmespath raises several parse error types
                errors.append(f"{path}.custom_response.{field}: invalid JMESPath: {exc}")
    return errors


def instruction_errors(
    path: str, ins: InstructionCfg, platforms: dict[str, PlatformCfg], assets: set[str]
) -> list[str]:
    errors = route_errors(path, ins.model, ins.platforms, platforms)
    if ins.cost and ins.cost.asset not in assets:
        errors.append(f"{path}.cost.asset: unknown asset '{ins.cost.asset}'")
    for i, msg in enumerate(ins.messages):
        mpath = f"{path}.messages[{i}]"
        if (msg.content is None) == (msg.multi_content is None):
            errors.append(f"{mpath}: exactly one of content and multi_content is required")
        errors += _template_errors(f"{mpath}.content", msg.content)
        for j, part in enumerate(msg.multi_content or []):
            errors += _template_errors(f"{mpath}.multi_content[{j}].text", part.text)
            if part.image_url:
                errors += _template_errors(f"{mpath}.multi_content[{j}].image_url.url", part.image_url.url)
    return errors


def platform_errors(path: str, p: PlatformCfg) -> list[str]:
    errors = []
    if p.type == "http_job":
        for key in ("submit", "poll", "job_id", "status"):
            if key not in p.options:
                errors.append(f"{path}.options.{key}: required for type 'http_job'")
    return errors


def app_errors(path: str, app: AppCfg, platforms: dict[str, PlatformCfg]) -> list[str]:
    assets = {a.name for a in app.assets}
    errors = _duplicates(app.strategies, "name", f"{path}.strategies")
    errors += _duplicates(app.instructions, "name", f"{path}.instructions")
    errors += _duplicates(app.assets, "name", f"{path}.assets")
    errors += _duplicates(app.server_keys, "name", f"{path}.server_keys")
    errors += _duplicates(app.relay_tokens, "name", f"{path}.relay_tokens")
    for i, s in enumerate(app.strategies):
        errors += strategy_errors(f"{path}.strategies[{i}]", s, platforms, assets)
    for i, ins in enumerate(app.instructions):
        errors += instruction_errors(f"{path}.instructions[{i}]", ins, platforms, assets)
    errors += client_trust_errors(path, app)
    return errors


def client_trust_errors(path: str, app: AppCfg) -> list[str]:
    """One app's issuers: distinct user prefixes (their subjects never collide), and an
    attestation issuer that is not also a user-token issuer (neither stands in for the other)."""
    errors = []
    prefixes: dict[str, int] = {}
    for i, issuer in enumerate(app.user_tokens):
        if issuer.user_prefix in prefixes:
            errors.append(
                f"{path}.user_tokens[{i}].user_prefix: '{issuer.user_prefix}' is also the prefix of "
                f"user_tokens[{prefixes[issuer.user_prefix]}]; two issuers of one app need different prefixes"
            )
        prefixes.setdefault(issuer.user_prefix, i)
    att = app.attestation
    if att is not None and any((u.issuer, u.audience) == (att.issuer, att.audience) for u in app.user_tokens):
        errors.append(f"{path}.attestation: issuer and audience must differ from every user_tokens entry")
    return errors


def issuer_pair_errors(apps: list[tuple[str, str, list]]) -> list[str]:
    """The (issuer, audience) pair of a user-token issuer chooses the app, so no two apps
    may share one. ``apps`` holds (path, app_id, user_tokens) per app."""
    errors = []
    owner: dict[tuple[str, str], str] = {}
    for path, app_id, issuers in apps:
        for i, issuer in enumerate(issuers):
            pair = (issuer.issuer, issuer.audience)
            if pair in owner and owner[pair] != app_id:
                errors.append(
                    f"{path}.user_tokens[{i}]: issuer '{issuer.issuer}' with audience '{issuer.audience}' "
                    f"is already used by app '{owner[pair]}'"
                )
            owner.setdefault(pair, app_id)
    return errors


def reference_errors(cfg: Config) -> list[str]:
    errors = _duplicates(cfg.platforms, "id", "platforms")
    errors += _duplicates(cfg.models, "name", "models")
    errors += _duplicates(cfg.apps, "id", "apps")
    platforms = {p.id: p for p in cfg.platforms}
    for i, p in enumerate(cfg.platforms):
        errors += platform_errors(f"platforms[{i}]", p)
    for i, app in enumerate(cfg.apps):
        errors += app_errors(f"apps[{i}]", app, platforms)
    errors += issuer_pair_errors([(f"apps[{i}]", a.id, a.user_tokens) for i, a in enumerate(cfg.apps)])
    return errors


def parse_config(data: Any, env: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed document; raises ConfigError listing every problem."""
    errors: list[str] = []
    data = expand_env(data if data is not None else {}, dict(os.environ if env is None else env), (), errors)
    if not isinstance(data, dict):
        raise ConfigError(["(root): must be a mapping"])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(errors + _pydantic_errors(exc)) from None
    errors += reference_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"(file): invalid YAML: {exc}"]) from None
    return parse_config(data, env)
