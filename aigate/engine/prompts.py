"""Rendering server-side prompt templates with the client's ``parameters``."""

from __future__ import annotations

from typing import Any

from aigate.errors import invalid
from aigate.gotemplate import MissingVariable, TemplateError, compile_template, render_value


def render_text(source: str, parameters: dict[str, Any], where: str) -> str:
    if "{{" not in source:
        return source
    try:
        return compile_template(source).render(parameters)
    except MissingVariable as exc:
        raise invalid(f"parameters.{exc.name}: missing template variable (used by {where})") from None
    except TemplateError as exc:
        raise invalid(f"parameters: cannot render {where}: {exc}") from None


def render_request(template: dict[str, Any], parameters: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return render_value(template, parameters)
    except MissingVariable as exc:
        raise invalid(f"parameters.{exc.name}: missing template variable (used by {where})") from None
    except TemplateError as exc:
        raise invalid(f"parameters: cannot render {where}: {exc}") from None
