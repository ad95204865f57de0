"""The routers mounted under /api (one module per resource)."""

from __future__ import annotations

from aigate.api.admin import (
    apps,
    console_api,
    dashboard,
    keys,
    logs,
    models,
    operations,
    platforms,
    specs,
    users,
)

ROUTERS: list = [
    apps.router,
    keys.server_keys,
    keys.relay_tokens,
    *specs.routers,
    users.router,
    platforms.router,
    models.router,
    logs.router,
    dashboard.router,
    operations.router,
    console_api.router,
]
