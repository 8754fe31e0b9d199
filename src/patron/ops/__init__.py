"""Running Patron: readiness, Prometheus metrics, structured logs with request ids.

`patron.ops.middleware.OpsMiddleware` is the one ASGI layer in front of everything (the till's
raw route included): it gives each request its id and counts it. `patron.ops.routes` adds
`/ready` and `/metrics` beside the existing `/health`. See docs/operations.md.
"""
