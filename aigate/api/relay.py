"""The OpenAI-compatible relay (/v1)."""
from __future__ import annotations

routes: list = []
