"""The routers mounted under /api (one module per resource)."""
from __future__ import annotations

ROUTERS: list = []
