"""The routers mounted under /api (one module per resource)."""
from __future__ import annotations

from aigate.api import (
    admin_apps,
    admin_dashboard,
    admin_keys,
    admin_logs,
    admin_models,
    admin_platforms,
    admin_specs,
    admin_users,
)

ROUTERS: list = [
    admin_apps.router,
    admin_keys.server_keys,
    admin_keys.relay_tokens,
    *admin_specs.routers,
    admin_users.router,
    admin_platforms.router,
    admin_models.router,
    admin_logs.router,
    admin_dashboard.router,
]
