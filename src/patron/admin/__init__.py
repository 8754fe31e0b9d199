"""The admin web UI: staff accounts and roles, server-rendered pages over the same services as the API.

Mounted at /admin by `patron.app.create_app` (see `web.create_admin_app`). Adding a page:
docs/admin.md, "Adding a page".
"""
