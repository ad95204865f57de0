"""The Admin API (/api): one module per resource, the router list, shared helpers."""
