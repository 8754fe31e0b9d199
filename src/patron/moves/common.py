"""What merges and transfers share: new row ids beyond the snapshot's, and the errors."""

from __future__ import annotations

from itertools import chain

from sqlalchemy import BigInteger, func, literal_column, select
from sqlalchemy.orm import Session

from patron.sales.plan import Planner


def more_ids(session: Session, planner: Planner, *, lots: int, entries: int) -> None:
    """Row ids for `lots` lots and `entries` entries more than the snapshot reserved: on
    PostgreSQL sequence values (read under the locks, once the count is known); on SQLite,
    where writers are serialised, the planner counts on from the largest id in use anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = planner.ids
    for table, n in (("lots", lots), ("entries", entries)):
        if n <= 0:
            continue
        values = [
            int(v)
            for v in session.scalars(
                select(literal_column(f"nextval('{table}_id_seq')", BigInteger)).select_from(
                    func.generate_series(1, n)
                )
            )
        ]
        if table == "lots":
            ids.lots = chain(ids.lots, values)
        else:
            ids.entries = chain(ids.entries, values)
