"""Telling a database outage from bad data: an outage is retried (the rows wait), bad
data is that row's problem. Used by the writer and by the call lifecycle, which answers
503 ``service_unavailable`` to an outage and 500 ``internal_error`` to anything else."""
from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_outage(exc: BaseException) -> bool:
    """Connection-level failures: unreachable, shutting down, locked or failing storage."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError, ConnectionError, sqlite3.OperationalError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
