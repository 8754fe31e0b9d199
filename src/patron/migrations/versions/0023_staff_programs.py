"""access: staff users limited to programs

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null: every program, as before (existing users keep working unchanged).
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("programs", patron.db.types.JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("programs")
