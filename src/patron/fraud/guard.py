"""The fraud controls on the sale path: one query per round of sales, pure checks per sale.

`start` is called by the sale pipeline once the round's accounts are locked, and only for a
program whose controls check sales (otherwise the sale path sends no statement of its own).
It reads, in one statement (a UNION ALL), the figures every limit of the round needs: per
member, card, store and API key of the round, the sales of the last minute, the sales,
points and redemptions of the program's day; the member's recent sales (duplicates) and, when
redemptions need a verified contact, which members have one. The planner then asks `check`
for each sale (a redemption over its limit, or by a member without a verified contact, is
refused; a sale over a limit is held) and tells `recorded` what it wrote; the pipeline calls
`write` after the applier: the activity rows and the review items, in the same transaction.
Figures run on within the round, so the tenth sale of a batch sees the nine before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    DateTime,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.clock import EARLIEST_SALE
from patron.events import outbox
from patron.fraud.contact import verified_members_stmt
from patron.fraud.errors import ContactNotVerified, VelocityExceeded
from patron.fraud.models import FraudActivity, FraudReview
from patron.fraud.rules import Rules

ACT = cast(Table, FraudActivity.__table__)
REV = cast(Table, FraudReview.__table__)
_COLUMN = {
    "member": ACT.c.member_id,
    "card": ACT.c.card,
    "store": ACT.c.store_id,
    "key": ACT.c.key_id,
}
# Figures per subject: sales in the last minute, sales, points and redemptions today.
MINUTE, SALES, POINTS, REDEMPTIONS = range(4)
_OF_LIMIT = {
    "sales_per_minute": MINUTE,
    "sales_per_day": SALES,
    "points_per_day": POINTS,
    "redemptions_per_day": REDEMPTIONS,
}


@dataclass(frozen=True)
class Sale:
    """One sale as the checks see it."""

    member_id: int
    card: str | None
    store_id: int | None
    external_id: str
    amount_minor: int
    occurred_at: datetime
    spends: bool  # points, or coupons (a redemption)
    spends_points: bool


@dataclass
class Hold:
    """Why a sale's points are held: every reason, the first one's code leads."""

    reasons: list[dict[str, Any]]

    @property
    def code(self) -> str:
        return str(self.reasons[0]["code"])

    def answer(self, points: int) -> dict[str, Any]:
        """The `review` field of the till's answer."""
        return {
            "code": self.code,
            "codes": [r["code"] for r in self.reasons],
            "held_points": points,
            "detail": "the sale is recorded; its points are held (pending) until staff review "
            "it: " + ", ".join(str(r["code"]) for r in self.reasons),
        }


@dataclass
class _Recent:
    member_id: int
    store_id: int | None
    amount_minor: int
    occurred_at: datetime
    external_id: str
    purchase_id: int | None


def day_start(now: datetime, timezone: str) -> datetime:
    """Midnight of `now`'s day in the program's timezone, in UTC."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def subjects(sale: Sale, store_id: int | None, key: str | None) -> dict[str, str | None]:
    return {
        "member": str(sale.member_id),
        "card": sale.card,
        "store": str(store_id) if store_id is not None else None,
        "key": key,
    }


_built: dict[tuple[Any, ...], Any] = {}


def statement(dims: tuple[str, ...], duplicates: bool = False, verified: bool = False) -> Any:
    """The round's one read for its shape, built once (its values are bound parameters:
    `figure_params`): per dimension in `dims` the four figures of each subject in `s_<dim>`,
    the members' sales in the duplicate window, the members with a verified contact."""
    key = (dims, duplicates, verified)
    found = _built.get(key)
    if found is not None:
        return found
    at = ACT.c.at.type
    start, minute, since = (bindparam(n, type_=at) for n in ("x_start", "x_minute", "x_since"))
    pid = bindparam("x_pid", type_=BigInteger)
    parts = []
    for dim in dims:
        column = _COLUMN[dim]
        values = bindparam(f"s_{dim}", expanding=True, type_=column.type)
        today = ACT.c.at >= start
        parts.append(
            _row(
                literal(dim, String),
                sql_cast(column, String),
                func.sum(case((ACT.c.at >= minute, ACT.c.sales), else_=0)),
                func.sum(case((today, ACT.c.sales), else_=0)),
                func.sum(case((today, ACT.c.points), else_=0)),
                func.sum(case((today, ACT.c.redemptions), else_=0)),
                sql_cast(null(), BigInteger),
                sql_cast(null(), DateTime(timezone=True)),
                sql_cast(null(), String),
            )
            .where(ACT.c.program_id == pid, column.in_(values), ACT.c.at >= since)
            .group_by(column)
        )
    if duplicates:
        occurred = ACT.c.occurred_at.type
        parts.append(
            _row(
                literal("dup", String),
                sql_cast(ACT.c.member_id, String),
                ACT.c.store_id,
                ACT.c.amount_minor,
                ACT.c.purchase_id,
                literal(0, BigInteger),
                ACT.c.purchase_id,
                ACT.c.occurred_at,
                ACT.c.external_id,
            ).where(
                ACT.c.program_id == pid,
                ACT.c.member_id.in_(bindparam("x_members", expanding=True, type_=BigInteger)),
                ACT.c.sales == 1,
                ACT.c.occurred_at >= bindparam("x_lo", type_=occurred),
                ACT.c.occurred_at <= bindparam("x_hi", type_=occurred),
            )
        )
    if verified:
        sub = verified_members_stmt(
            pid, bindparam("x_spenders", expanding=True, type_=BigInteger)
        ).subquery()
        parts.append(
            _row(
                literal("ver", String),
                sql_cast(sub.c.id, String),
                *[literal(0, BigInteger) for _ in range(4)],
                sql_cast(null(), BigInteger),
                sql_cast(null(), DateTime(timezone=True)),
                sql_cast(null(), String),
            )
        )
    found = _built[key] = parts[0] if len(parts) == 1 else union_all(*parts)
    return found


def figure_params(
    program_id: int, wanted: dict[str, set[str]], *, now: datetime, timezone: str
) -> dict[str, Any]:
    start = day_start(now, timezone)
    minute = now - timedelta(minutes=1)
    out: dict[str, Any] = {
        "x_pid": program_id,
        "x_start": start,
        "x_minute": minute,
        "x_since": min(start, minute),
    }
    for dim, values in wanted.items():
        out[f"s_{dim}"] = (
            sorted(int(v) for v in values) if dim in ("member", "store") else sorted(values)
        )
    return out


_NAMES = ("tag", "subject", "a", "b", "c", "d", "purchase_id", "occurred_at", "external_id")


def _row(*columns: Any) -> Any:
    """One part of the UNION ALL, its columns named alike (the first part names the result)."""
    return sql_select(*[c.label(n) for c, n in zip(columns, _NAMES, strict=True)])


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Guard:
    """A round's figures and the checks of its sales (see the module's docstring)."""

    def __init__(self, config: Any, rules: Rules, *, actor: Actor, now: datetime) -> None:
        self.config, self.rules, self.now = config, rules, now
        self.key = actor.id if actor.kind == "api_key" else None
        self.figures: dict[tuple[str, str], list[int]] = {}
        self.recent: list[_Recent] = []
        self.verified: set[int] = set()
        self.activity: list[dict[str, Any]] = []
        self.reviews: list[dict[str, Any]] = []

    # --- the one read --------------------------------------------------------------------

    def read(self, session: Session, sales: list[Sale]) -> None:
        rules = self.rules
        wanted: dict[str, set[str]] = {d: set() for d in rules.dimensions()}
        for sale in sales:
            for dim, subject in subjects(sale, sale.store_id, self.key).items():
                if dim in wanted and subject is not None:
                    wanted[dim].add(subject)
        wanted = {d: v for d, v in wanted.items() if v}
        params = figure_params(self.config.id, wanted, now=self.now, timezone=self.config.timezone)
        duplicates = bool(rules.duplicate_minutes and sales)
        if duplicates:
            window = timedelta(minutes=rules.duplicate_minutes or 0)
            params["x_members"] = sorted({s.member_id for s in sales})
            params["x_lo"] = min(s.occurred_at for s in sales) - window
            params["x_hi"] = max(s.occurred_at for s in sales) + window
        verified = rules.verified_contact and any(s.spends for s in sales)
        if verified:
            params["x_spenders"] = sorted({s.member_id for s in sales if s.spends})
        if not (wanted or duplicates or verified):
            return
        stmt = statement(tuple(wanted), duplicates, verified)
        for tag, subject, a, b, c, d, purchase_id, occurred, ext in session.execute(stmt, params):
            if tag == "dup":
                self.recent.append(
                    _Recent(int(subject), a, int(b), _utc(occurred), ext, purchase_id)
                )
            elif tag == "ver":
                self.verified.add(int(subject))
            else:
                self.figures[(tag, subject)] = [int(a or 0), int(b or 0), int(c or 0), int(d or 0)]

    # --- per sale --------------------------------------------------------------------------

    def _figure(self, dim: str, subject: str | None) -> list[int] | None:
        if subject is None:
            return None
        return self.figures.setdefault((dim, subject), [0, 0, 0, 0])

    def check(self, sale: Sale, points: int) -> Hold | None:
        """A refusal (raised: nothing is written) or why the sale's points are held."""
        rules = self.rules
        if rules.verified_contact and sale.spends and sale.member_id not in self.verified:
            raise ContactNotVerified(sale.member_id)
        reasons: list[dict[str, Any]] = []
        for dim, subject in subjects(sale, sale.store_id, self.key).items():
            got = self._figure(dim, subject) if dim in rules.dimensions() else None
            if got is None:
                continue
            limit = rules.limits.get((dim, "redemptions_per_day"))
            if sale.spends_points and limit is not None and got[REDEMPTIONS] + 1 > limit:
                raise VelocityExceeded(
                    f"{dim} {subject} has made {got[REDEMPTIONS]} redemptions today, the "
                    f"program's limit is {limit}",
                    code=f"velocity_{dim}_redemptions_per_day",
                )
            after = {
                "sales_per_minute": got[MINUTE] + 1,
                "sales_per_day": got[SALES] + 1,
                "points_per_day": got[POINTS] + points,
            }
            for name, value in after.items():
                limit = rules.limits.get((dim, name))
                if limit is not None and value > limit:
                    reasons.append(
                        {"code": f"velocity_{dim}_{name}", "limit": limit, "value": value}
                    )
        if rules.duplicate_minutes:
            window = timedelta(minutes=rules.duplicate_minutes)
            for other in self.recent:
                if (
                    other.member_id == sale.member_id
                    and other.store_id == sale.store_id
                    and other.amount_minor == sale.amount_minor
                    and other.external_id != sale.external_id
                    and abs(other.occurred_at - sale.occurred_at) <= window
                ):
                    reasons.append(
                        {
                            "code": "duplicate_transaction",
                            "other_order": other.external_id,
                            "other_purchase_id": other.purchase_id,
                            "window_minutes": rules.duplicate_minutes,
                        }
                    )
                    break
        if rules.hold_above is not None and points > rules.hold_above:
            reasons.append(
                {"code": "points_above_threshold", "limit": rules.hold_above, "value": points}
            )
        return Hold(reasons) if reasons else None

    def recorded(
        self,
        sale: Sale,
        *,
        purchase_id: int,
        account_id: int,
        points: int,
        earn_entry_id: int | None,
        hold: Hold | None,
    ) -> None:
        """The sale was planned: its figures run on, its activity and review rows wait for
        `write`."""
        for dim, subject in subjects(sale, sale.store_id, self.key).items():
            got = self._figure(dim, subject) if dim in self.rules.dimensions() else None
            if got is not None:
                got[MINUTE] += 1
                got[SALES] += 1
                got[POINTS] += points
                got[REDEMPTIONS] += 1 if sale.spends_points else 0
        self.recent.append(
            _Recent(
                sale.member_id,
                sale.store_id,
                sale.amount_minor,
                sale.occurred_at,
                sale.external_id,
                purchase_id,
            )
        )
        self.activity.append(
            {
                "program_id": self.config.id,
                "at": self.now,
                "member_id": sale.member_id,
                "card": sale.card,
                "store_id": sale.store_id,
                "key_id": self.key,
                "sales": 1,
                "points": points,
                "redemptions": 1 if sale.spends_points else 0,
                "amount_minor": sale.amount_minor,
                "occurred_at": sale.occurred_at,
                "purchase_id": purchase_id,
                "external_id": sale.external_id,
            }
        )
        if hold is not None:
            self.reviews.append(
                {
                    "program_id": self.config.id,
                    "member_id": sale.member_id,
                    "account_id": account_id,
                    "purchase_id": purchase_id,
                    "external_id": sale.external_id,
                    "earn_entry_id": earn_entry_id,
                    "lot_id": None,
                    "points": points,
                    "code": hold.code,
                    "reasons": hold.reasons,
                    "status": "open",
                    "opened_at": self.now,
                    "decided_at": None,
                    "decided_by": None,
                    "reason": None,
                    "released_points": 0,
                    "reversed_points": 0,
                }
            )

    def write(self, session: Session, entries: list[dict[str, Any]]) -> None:
        """The round's activity rows and review items (with their outbox events), after the
        applier wrote the sales (`entries`: the plan's entry rows, for the held lots)."""
        if self.activity:
            session.execute(insert(ACT), self.activity)
        if not self.reviews:
            return
        lot_of = {e["id"]: e["lot_id"] for e in entries if e["kind"] == "earn"}
        for row in self.reviews:  # rare: one at a time, each with its event
            row["lot_id"] = lot_of.get(row["earn_entry_id"])
            item = FraudReview(**row)
            session.add(item)
            session.flush()
            emit(session, self.config.code, item, at=self.now)
        self.activity, self.reviews = [], []


REVIEW_EVENT = "fraud.review"


def emit(session: Session, program: str, item: FraudReview, *, at: datetime) -> None:
    """The item's `fraud.review` event (opened, or decided), in the caller's transaction."""
    outbox.emit(
        session,
        kind=REVIEW_EVENT,
        program_id=item.program_id,
        member_id=item.member_id,
        at=at,
        payload={
            "program": program,
            "member_id": item.member_id,
            "review_id": item.id,
            "status": item.status,
            "code": item.code,
            "codes": [r["code"] for r in item.reasons],
            "order": item.external_id,
            "points": item.points,
            "released_points": item.released_points,
            "reversed_points": item.reversed_points,
            "reason": item.reason,
        },
    )


def start(
    session: Session, config: Any, sales: list[Sale], *, actor: Actor, now: datetime
) -> Guard | None:
    """The round's guard, its figures read; None (and no statement) for a program whose
    controls do not check sales."""
    rules: Rules | None = config.fraud
    if rules is None or not (rules.earn_checks or rules.verified_contact):
        return None
    if not rules.earn_checks and not any(s.spends for s in sales):
        return None
    guard = Guard(config, rules, actor=actor, now=now)
    guard.read(session, sales)
    return guard


def ahead(req: Any, member_id: int, config: Any, now: datetime) -> Sale:
    """A sale as the round's read needs it, before it is planned (the planner checks the
    store and the time; here an unknown store or a time out of range just counts as none)."""
    at = req.occurred_at
    if at is None or at > now or at < EARLIEST_SALE:
        at = now
    return Sale(
        member_id=member_id,
        card=req.member.card,
        store_id=config.stores.get(req.store) if req.store else None,
        external_id=req.external_id,
        amount_minor=0,
        occurred_at=at,
        spends=bool(req.points_to_spend or req.coupons),
        spends_points=bool(req.points_to_spend),
    )
