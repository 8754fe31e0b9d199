"""members: restore ix_members_name_lower where 0020's SQLite rebuild of members lost it

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04 01:50:00

0020 rebuilt `members` on SQLite (batch mode) and the expression index on lower(name) did not
survive the copy; 0020 now keeps it, and this revision puts it back on databases that already
ran the old 0020. PostgreSQL never lost it: IF NOT EXISTS makes this a no-op there.
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_members_name_lower ON members (lower(name))")


def downgrade() -> None:
    # The index belongs to 0001; nothing to undo.
    pass
