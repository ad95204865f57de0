"""The web console at /console/: server-rendered HTML (Jinja2, autoescaped) with htmx and
uPlot served from this package, under a strict Content-Security-Policy. Pages read what
the Admin API reads (its own functions, in process); every write goes through the Admin
API from the browser with the session cookie and its CSRF token, so the API's checks,
role rules and audit log apply to the console exactly as to scripts."""
