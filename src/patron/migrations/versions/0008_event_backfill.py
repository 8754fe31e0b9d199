"""the outbox reports every ledger entry: one already-dispatched points.* event for each entry
written before entries had events (so `patron check` holds on an upgraded database)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from patron.db.types import UTCDateTime
from patron.events.outbox import iso_utc_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The tables as this revision knows them (not the application's models, which move on).
_meta = sa.MetaData()
_programs = sa.Table(
    "programs", _meta, sa.Column("id", sa.BigInteger), sa.Column("code", sa.String)
)
_stores = sa.Table("stores", _meta, sa.Column("id", sa.BigInteger), sa.Column("code", sa.String))
_accounts = sa.Table(
    "accounts", _meta, sa.Column("id", sa.BigInteger), sa.Column("member_id", sa.BigInteger)
)
_entries = sa.Table(
    "entries",
    _meta,
    sa.Column("id", sa.BigInteger),
    sa.Column("program_id", sa.BigInteger),
    sa.Column("account_id", sa.BigInteger),
    sa.Column("kind", sa.String),
    sa.Column("points", sa.BigInteger),
    sa.Column("occurred_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime),
    sa.Column("reason", sa.String),
    sa.Column("external_ref", sa.String),
    sa.Column("store_id", sa.BigInteger),
    sa.Column("channel", sa.String),
    sa.Column("lot_id", sa.BigInteger),
)
_lots = sa.Table(
    "lots", _meta, sa.Column("id", sa.BigInteger), sa.Column("expires_at", UTCDateTime)
)
_events = sa.Table(
    "domain_events",
    _meta,
    sa.Column("id", sa.BigInteger),
    sa.Column("program_id", sa.BigInteger),
    sa.Column("member_id", sa.BigInteger),
    sa.Column("kind", sa.String),
    sa.Column("entry_id", sa.BigInteger),
    sa.Column("payload", sa.JSON),
    sa.Column("at", UTCDateTime),
    sa.Column("dispatched", sa.Boolean),
)
_KINDS = {
    "earn": "points.earned",
    "redeem": "points.redeemed",
    "reverse": "points.refunded",
    "adjust": "points.adjusted",
    "expire": "points.expired",
}


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    build = sa.func.jsonb_build_object if dialect == "postgresql" else sa.func.json_object
    occurred = iso_utc_sql(_entries.c.occurred_at, dialect)
    e, a, p, s, lot = _entries, _accounts, _programs, _stores, _lots
    # Points that made a lot (an earn, a positive adjustment) report when the lot expires.
    expires = sa.case(
        (
            e.c.kind.in_(["earn", "adjust"]) & lot.c.expires_at.is_not(None),
            iso_utc_sql(lot.c.expires_at, dialect),
        ),
        else_=sa.null(),
    )
    kind = sa.case(*((e.c.kind == k, v) for k, v in _KINDS.items()))
    payload = build(
        "program", p.c.code,
        "member_id", a.c.member_id,
        "entry_id", e.c.id,
        "entry_kind", e.c.kind,
        "points", e.c.points,
        "occurred_at", occurred,
        "reason", e.c.reason,
        "order", e.c.external_ref,
        "store", s.c.code,
        "channel", e.c.channel,
        "expires_at", expires,
    )  # fmt: skip
    has_event = sa.exists().where(_events.c.entry_id == e.c.id)
    rows = (
        sa.select(e.c.program_id, a.c.member_id, kind, e.c.id, payload, e.c.created_at, sa.true())
        .select_from(
            e.join(a, a.c.id == e.c.account_id)
            .join(p, p.c.id == e.c.program_id)
            .outerjoin(s, s.c.id == e.c.store_id)
            .outerjoin(lot, lot.c.id == e.c.lot_id)
        )
        .where(e.c.kind.in_(list(_KINDS)), ~has_event)
        .order_by(e.c.id)
    )
    op.execute(
        _events.insert().from_select(
            ["program_id", "member_id", "kind", "entry_id", "payload", "at", "dispatched"], rows
        )
    )


def downgrade() -> None:
    # The backfilled events are indistinguishable from real ones once delivered; keep them.
    pass
