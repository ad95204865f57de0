"""The App API's AI request routes (seed 000, SPEC §5.5–5.6)."""
from __future__ import annotations

routes: list = []
