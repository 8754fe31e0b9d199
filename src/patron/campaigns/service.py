"""Campaigns: definitions, launch (assignment and giving), stop, the run job and results.

Assignment is one INSERT … SELECT: every member of the segment (its snapshot at launch, or the
live query) gets a bucket 0–9999 from a hash of the campaign's seed and the member id, computed
in SQL with integer arithmetic that SQLite and PostgreSQL share (`bucket` is the same in
Python, for tests). The holdout takes the first buckets, the variants the rest by share.
Re-running the same campaign gives every member the same arm; (campaign, member) is the key,
so a member is in exactly one arm and is given at most once.

Giving goes in chunks through the ledger's planner (`Planner.adjust`, as bulk adjustments do) or
the rewards' coupon issue (`redeem.bulk_issue`), under the campaign's row lock (FOR UPDATE on
PostgreSQL; SQLite has one writer): the budget is read and spent by one holder at a time, so two
launches or runs at once never exceed it nor give twice."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Float,
    String,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.campaigns import stats
from patron.campaigns.schemas import (
    CONTROL,
    ArmResult,
    CampaignIn,
    CampaignOut,
    ReachOut,
    ResultsOut,
    Uplift,
    Variant,
)
from patron.coupons.models import Coupon, Reward
from patron.db import config_version
from patron.db.types import UTCDateTime
from patron.errors import Conflict, Invalid, NotFound, PatronError
from patron.events import outbox
from patron.experiments import arms as rule_arms
from patron.experiments.models import Campaign, CampaignMember
from patron.ledger.models import Account, Purchase
from patron.money import quantum
from patron.programs.models import Program
from patron.segments import service as segments
from patron.segments.definition import Definition
from patron.segments.models import SegmentSnapshotMember

PRIME = 2_147_483_647  # 2^31 − 1: (id mod P) · A < 2^62 stays inside a signed 64-bit integer
BUCKETS = 10_000
CHUNK = 2_000
CM = cast(Table, CampaignMember.__table__)


class CampaignNotFound(NotFound):
    code = "campaign_not_found"


class CampaignExists(Conflict):
    code = "campaign_exists"


class CampaignState(Conflict):
    """The campaign's status does not allow this (e.g. launching one that runs already)."""

    code = "campaign_state"


class UnknownReference(Invalid):
    code = "unknown_reference"


# --- assignment -------------------------------------------------------------------------------


def seed(program_id: int, code: str, campaign_id: int) -> tuple[int, int, int, int]:
    """The campaign's four hash constants, from its identity: stable across re-runs,
    different for every campaign."""
    digest = hashlib.sha256(f"campaign:{program_id}:{code}:{campaign_id}".encode()).digest()
    a, s, b, c = (int.from_bytes(digest[k : k + 8], "big") for k in (0, 8, 16, 24))
    return 1 + a % (PRIME - 1), s % PRIME, b % PRIME, c % PRIME


def bucket(keys: tuple[int, int, int, int], member_id: int) -> int:
    """The member's bucket 0–9999 (what `_bucket_sql` computes in the database): an affine
    step, then two squarings mod P. The squarings matter: an affine hash alone walks
    consecutive ids in a near-regular pattern, and small groups came out 55/25 instead of
    40/40 for some campaigns; with them the split of 80 consecutive ids is binomial."""
    a, s, b, c = keys
    h = ((member_id % PRIME) * a + s) % PRIME
    h = (h * h + b) % PRIME
    h = (h * h + c) % PRIME
    return h % BUCKETS


def _bucket_sql(keys: tuple[int, int, int, int], member_id: Any) -> Any:
    a, s, b, c = (literal(k, BigInteger) for k in keys)
    h = ((member_id % PRIME) * a + s) % PRIME
    h = (h * h + b) % PRIME
    h = (h * h + c) % PRIME
    return h % BUCKETS


def boundaries(holdout_pct: int, variants: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(arm, first bucket past it) in order: the control first, then each variant by share."""
    edge = holdout_pct * BUCKETS // 100
    out = [(CONTROL, edge)] if holdout_pct else []
    rest, cumulative = BUCKETS - edge, 0
    for v in variants:
        cumulative += v["share"]
        out.append((v["key"], edge + rest * cumulative // 100))
    return out


def arm_of(campaign: Campaign, member_id: int) -> str:
    b = bucket(seed(campaign.program_id, campaign.code, campaign.id), member_id)
    return next(arm for arm, edge in boundaries(campaign.holdout_pct, campaign.arms) if b < edge)


def _arm_sql(campaign: Campaign, member_id: Any) -> Any:
    b = _bucket_sql(seed(campaign.program_id, campaign.code, campaign.id), member_id)
    edges = boundaries(campaign.holdout_pct, campaign.arms)
    return case(
        *((b < edge, literal(arm)) for arm, edge in edges[:-1]), else_=literal(edges[-1][0])
    )


# --- definitions ------------------------------------------------------------------------------


def variants(row: Campaign) -> list[Variant]:
    return [Variant.model_validate(v) for v in row.arms]


def member_count(session: Session, row: Campaign) -> int:
    return int(
        session.scalar(select(func.count()).where(CampaignMember.campaign_id == row.id)) or 0
    )


def out(session: Session, row: Campaign) -> CampaignOut:
    return CampaignOut(
        code=row.code, name=row.name, status=row.status, segment=row.segment,
        targeting=row.targeting, snapshot_id=row.snapshot_id, starts_at=row.starts_at,
        ends_at=row.ends_at, budget_points=row.budget_points, budget_coupons=row.budget_coupons,
        holdout_pct=row.holdout_pct, variants=variants(row), points_given=row.points_given,
        coupons_given=row.coupons_given, members=member_count(session, row),
        launched_at=row.launched_at, launched_by=row.launched_by, stopped_at=row.stopped_at,
        version=row.version, updated_at=row.updated_at, updated_by=row.updated_by,
    )  # fmt: skip


def _doc(row: Campaign) -> dict[str, Any]:
    return {
        "code": row.code, "name": row.name, "status": row.status, "segment": row.segment,
        "targeting": row.targeting, "holdout_pct": row.holdout_pct, "arms": row.arms,
        "budget_points": row.budget_points, "budget_coupons": row.budget_coupons,
        "starts_at": row.starts_at.isoformat() if row.starts_at else None,
        "ends_at": row.ends_at.isoformat() if row.ends_at else None,
    }  # fmt: skip


def list_campaigns(session: Session, program: Program) -> list[Campaign]:
    return list(
        session.scalars(
            select(Campaign).where(Campaign.program_id == program.id).order_by(Campaign.id.desc())
        )
    )


def get_campaign(session: Session, program: Program, code: str, *, lock: bool = False) -> Campaign:
    stmt = select(Campaign).where(Campaign.program_id == program.id, Campaign.code == code)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise CampaignNotFound(f"no campaign {code!r} in program {program.code}")
    return row


def _check(session: Session, program: Program, body: CampaignIn) -> None:
    segments.get_segment(session, program, body.segment)  # 404 segment_not_found
    for v in body.variants:
        if v.action.kind == "rules":
            check_rules(session, program, v.action.rules or [], v.key)
        if v.action.kind != "coupon":
            continue
        reward = session.scalar(
            select(Reward).where(Reward.program_id == program.id, Reward.code == v.action.reward)
        )
        if reward is None:
            raise UnknownReference(f"no reward {v.action.reward!r} in program {program.code}")
        if reward.kind == "external":
            raise UnknownReference(f"reward {reward.code!r} is external: it issues no coupons")


def check_rules(session: Session, program: Program, arm_rules: list[Any], key: str) -> None:
    """A rules arm's rules, checked as the rule editor checks a rule set (422 invalid_rule_set,
    unknown_store, unknown_segment): the program's rule set with them added must be valid."""
    from patron.rules import publishing
    from patron.rules import service as rules_service

    for index, rule in enumerate(arm_rules):
        where = f"variant {key}: rules[{index}]"
        if rule.kind == "event":
            raise Invalid(
                f"{where}: an event rule is not an earning rule of a sale", code="invalid_rule_set"
            )
        if getattr(rule, "budget_points", None) is not None:
            raise Invalid(
                f"{where}: no budget_points in a campaign's rules (the campaign's results count "
                "what they cost; limit them with a cap rule)",
                code="invalid_rule_set",
            )
    doc = rules_service.document(session, program)
    merged = rules_service.validate_doc(
        {
            **doc.model_dump(mode="json", exclude_none=True),
            "rules": [
                *(r.model_dump(mode="json", exclude_none=True) for r in doc.rules),
                *(r.model_dump(mode="json", exclude_none=True) for r in arm_rules),
            ],
        }
    )
    publishing.check_references(session, program, merged)


def _apply(row: Campaign, body: CampaignIn) -> None:
    row.code, row.name, row.segment, row.targeting = (
        body.code, body.name.strip(), body.segment, body.targeting,
    )  # fmt: skip
    row.starts_at, row.ends_at = body.starts_at, body.ends_at
    row.budget_points, row.budget_coupons = body.budget_points, body.budget_coupons
    row.holdout_pct = body.holdout_pct
    row.arms = [v.model_dump(mode="json") for v in body.variants]


def create(
    session: Session, program: Program, body: CampaignIn, *, actor: Actor, now: datetime
) -> Campaign:
    if session.scalar(
        select(Campaign.id).where(Campaign.program_id == program.id, Campaign.code == body.code)
    ):
        raise CampaignExists(f"campaign {body.code!r} exists already in program {program.code}")
    _check(session, program, body)
    row = Campaign(
        program_id=program.id, status="draft", points_given=0, coupons_given=0, version=1,
        created_at=now, updated_at=now, updated_by=str(actor),
    )  # fmt: skip
    _apply(row, body)
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="campaign.created", subject_type="campaign",
        subject_id=row.id, at=now, program_id=program.id, after=_doc(row),
    )  # fmt: skip
    return row


def replace(
    session: Session, program: Program, code: str, body: CampaignIn, *, actor: Actor, now: datetime
) -> Campaign:
    row = get_campaign(session, program, code, lock=True)
    if body.code != code:
        raise Invalid("a campaign's code cannot change", code="code_mismatch")
    if row.status != "draft":
        raise CampaignState(f"campaign {code!r} is {row.status}: only a draft can change")
    _check(session, program, body)
    before = _doc(row)
    _apply(row, body)
    row.version += 1
    row.updated_at, row.updated_by = now, str(actor)
    session.flush()
    audit.record(
        session, actor=actor, action="campaign.changed", subject_type="campaign",
        subject_id=row.id, at=now, program_id=program.id, before=before, after=_doc(row),
    )  # fmt: skip
    return row


# --- reach, launch, run, stop -----------------------------------------------------------------


def _segment_ids(session: Session, program: Program, row: Campaign, *, now: datetime) -> Any:
    """A select of the target's member ids: the launch snapshot, or the live segment."""
    if row.targeting == "snapshot" and row.snapshot_id is not None:
        return select(SegmentSnapshotMember.member_id.label("member_id")).where(
            SegmentSnapshotMember.snapshot_id == row.snapshot_id
        )
    seg = segments.get_segment(session, program, row.segment)
    definition = Definition.model_validate(seg.definition)
    return segments.query(session, program, definition, as_of=None, now=now, own_code=row.segment)


def reach(session: Session, program: Program, row: Campaign, *, now: datetime) -> ReachOut:
    """What launching now would do (the confirmation page): one GROUP BY over the segment."""
    ids = _segment_ids(session, program, row, now=now).subquery()
    arm = _arm_sql(row, ids.c.member_id).label("arm")
    counts: dict[str, int] = {
        a: n for a, n in session.execute(select(arm, func.count()).group_by(arm))
    }
    arms = {CONTROL: counts.get(CONTROL, 0)} if row.holdout_pct else {}
    arms.update({v["key"]: counts.get(v["key"], 0) for v in row.arms})
    points = sum(arms[v.key] * (v.action.points or 0) for v in variants(row))
    coupons = sum(arms[v.key] for v in variants(row) if v.action.kind == "coupon")
    return ReachOut(
        segment=row.segment, members=sum(counts.values()), arms=arms, points_needed=points,
        coupons_needed=coupons, budget_points=row.budget_points,
        budget_coupons=row.budget_coupons,
    )  # fmt: skip


def _assign(session: Session, program: Program, row: Campaign, *, now: datetime) -> int:
    """Put every target member not yet in the campaign into an arm: one INSERT … SELECT."""
    ids = _segment_ids(session, program, row, now=now).subquery()
    idle = [v["key"] for v in row.arms if v["action"]["kind"] == "none"] + [CONTROL]
    # A rules arm's members are reached as they are assigned: their next sale earns by it.
    ruled = [v["key"] for v in row.arms if v["action"]["kind"] == "rules"] or ["-"]
    arm = _arm_sql(row, ids.c.member_id)
    source = (
        select(
            literal(row.id),
            ids.c.member_id,
            Account.id,
            arm,
            case(
                (arm.in_(idle), literal("none")),
                (arm.in_(ruled), literal("reached")),
                else_=literal("assigned"),
            ),
            literal(now),
            case((arm.in_(ruled), literal(now, UTCDateTime)), else_=literal(None, UTCDateTime)),
            literal(0),
            literal(0),
        )
        .join(Account, (Account.member_id == ids.c.member_id) & (Account.program_id == program.id))
        .where(
            ~exists().where(
                CampaignMember.campaign_id == row.id, CampaignMember.member_id == ids.c.member_id
            )
        )
    )
    before = member_count(session, row)
    columns = [
        "campaign_id", "member_id", "account_id", "arm", "outcome", "assigned_at",
        "reached_at", "points", "rule_points",
    ]  # fmt: skip
    session.execute(insert(CampaignMember).from_select(columns, source))
    # Counted, not rowcount: drivers differ on INSERT … SELECT.
    return member_count(session, row) - before


@dataclass
class Given:
    assigned: int = 0
    points_members: int = 0
    points: int = 0
    coupons: int = 0
    no_budget: int = 0
    refused: int = 0
    messages: int = 0


def _pending(session: Session, row: Campaign, arm: str, limit: int) -> list[int]:
    return list(
        session.scalars(
            select(CampaignMember.member_id)
            .where(
                CampaignMember.campaign_id == row.id,
                CampaignMember.arm == arm,
                CampaignMember.outcome == "assigned",
            )
            .order_by(CampaignMember.member_id)
            .limit(limit)
        )
    )


def _mark(session: Session, row: Campaign, members: list[int], outcome: str) -> None:
    if members:
        session.execute(
            update(CampaignMember)
            .where(CampaignMember.campaign_id == row.id, CampaignMember.member_id.in_(members))
            .values(outcome=outcome)
            .execution_options(synchronize_session=False)
        )


def _record(session: Session, rows: list[dict[str, Any]]) -> None:
    """Each reached member's outcome, points, entry and coupon: one executemany."""
    if rows:
        session.connection().execute(
            update(CM)
            .where(CM.c.campaign_id == bindparam("c"), CM.c.member_id == bindparam("m"))
            .values(
                outcome="reached",
                reached_at=bindparam("at"),
                points=bindparam("p"),
                entry_id=bindparam("e"),
                coupon_id=bindparam("k"),
            ),
            rows,
        )


def _give_points(
    session: Session, program: Program, row: Campaign, members: list[int], points: int,
    *, actor: Actor, now: datetime, given: Given,
) -> None:  # fmt: skip
    from patron.sales import snapshot
    from patron.sales.apply import apply
    from patron.sales.plan import Planner
    from patron.sales.points import settled_read
    from patron.sales.program_cache import ProgramConfig, cached, load

    config = cached(session, program.id) or load(session, program.id)
    wanted = set(members)

    def read(config: ProgramConfig) -> snapshot.Read:
        return snapshot.read(
            session, config, wanted, spenders=set(), takers=wanted, external_ids=[], sales=0,
            spending=0, now=now, new_rows=(len(members), len(members)),
        )  # fmt: skip

    config, got = settled_read(session, config, read, now=now, actor=actor)
    assert got is not None and got.ids is not None
    planner = Planner(config, got.states, ids=got.ids, actor=str(actor), now=now)
    done: list[dict[str, Any]] = []
    refused: list[int] = []
    reason = f"campaign {row.code}"
    for m in members:
        if m not in got.states:
            refused.append(m)
            continue
        try:
            entry = planner.adjust(m, points, reason=reason, qualifying=False)
        except PatronError:
            refused.append(m)
            continue
        done.append({"c": row.id, "m": m, "at": now, "p": points, "e": entry.id, "k": None})
    apply(session.connection(), planner.rows)
    _record(session, done)
    _mark(session, row, refused, "refused")
    given.points_members += len(done)
    given.points += points * len(done)
    given.refused += len(refused)
    session.execute(
        update(Campaign)
        .where(Campaign.id == row.id)
        .values(points_given=Campaign.points_given + points * len(done))
        .execution_options(synchronize_session=False)
    )
    row.points_given += points * len(done)


def _give_coupons(
    session: Session, program: Program, row: Campaign, members: list[int], reward_code: str,
    *, actor: Actor, now: datetime, given: Given,
) -> None:  # fmt: skip
    from patron.rewards import redeem
    from patron.rewards.catalog import get_reward

    reward = get_reward(session, program, reward_code)
    try:
        with session.begin_nested():
            coupons = redeem.bulk_issue(
                session, program, reward, members, campaign=row.code, actor=actor, now=now
            )
    except PatronError:  # out of stock, a reward that changed: nobody in this chunk gets one
        _mark(session, row, members, "refused")
        given.refused += len(members)
        return
    _record(
        session,
        [{"c": row.id, "m": c.member_id, "at": now, "p": 0, "e": None, "k": c.id} for c in coupons],
    )
    given.coupons += len(coupons)
    session.execute(
        update(Campaign)
        .where(Campaign.id == row.id)
        .values(coupons_given=Campaign.coupons_given + len(coupons))
        .execution_options(synchronize_session=False)
    )
    row.coupons_given += len(coupons)


def _give(
    session: Session, program: Program, row: Campaign, *, actor: Actor, now: datetime,
    chunk: int = CHUNK,
) -> Given:  # fmt: skip
    """Give every assigned member of every arm its action, in chunks, within the budget. The
    caller holds the campaign's row lock."""
    given = Given()
    for v in variants(row):
        action = v.action
        while action.kind in ("points", "coupon"):
            members = _pending(session, row, v.key, chunk)
            if not members:
                break
            if action.kind == "points":
                assert action.points is not None
                left = (
                    len(members)
                    if row.budget_points is None
                    else max(row.budget_points - row.points_given, 0) // action.points
                )
            else:
                left = (
                    len(members)
                    if row.budget_coupons is None
                    else max(row.budget_coupons - row.coupons_given, 0)
                )
            take, over = members[:left], members[left:]
            _mark(session, row, over, "no_budget")
            given.no_budget += len(over)
            if not take:
                continue
            if action.kind == "points":
                assert action.points is not None
                _give_points(session, program, row, take, action.points, actor=actor, now=now,
                             given=given)  # fmt: skip
            else:
                assert action.reward is not None
                _give_coupons(session, program, row, take, action.reward, actor=actor, now=now,
                              given=given)  # fmt: skip
    session.flush()
    return given


def _given_doc(given: Given) -> dict[str, int]:
    return {
        "assigned": given.assigned, "points_members": given.points_members,
        "points": given.points, "coupons": given.coupons, "no_budget": given.no_budget,
        "refused": given.refused, "messages": given.messages,
    }  # fmt: skip


def _start(
    session: Session, program: Program, row: Campaign, *, actor: Actor, now: datetime
) -> Given:
    if row.targeting == "snapshot":
        snap = segments.take_snapshot(
            session, program, row.segment, as_of=None, actor=actor, now=now
        )
        row.snapshot_id = snap.id
    row.status = "running"
    if row.starts_at is None or row.starts_at > now:
        row.starts_at = now
    session.flush()
    given = Given(assigned=_assign(session, program, row, now=now))
    done = _give(session, program, row, actor=actor, now=now)
    done.assigned = given.assigned
    done.messages = _message(session, program, row, now=now)
    _rules_changed(session, row)
    outbox.emit(
        session, kind="campaign.launched", program_id=program.id, member_id=None, at=now,
        payload={"program": program.code, "campaign": row.code, "segment": row.segment,
                 "snapshot": row.snapshot_id, **_given_doc(done)},
    )  # fmt: skip
    return done


def launch(
    session: Session, program: Program, code: str, *, actor: Actor, now: datetime
) -> tuple[Campaign, Given]:
    """Launch a draft: now (snapshot, assignment, giving), or at its start when that is later
    (status scheduled; the run job starts it). 409 campaign_state unless it is a draft."""
    row = get_campaign(session, program, code, lock=True)
    if row.status != "draft":
        raise CampaignState(f"campaign {code!r} is {row.status}, not a draft")
    if row.ends_at is not None and row.ends_at <= now:
        raise CampaignState(f"campaign {code!r} ended before it could start")
    row.launched_at, row.launched_by = now, str(actor)
    row.version += 1
    row.updated_at, row.updated_by = now, str(actor)
    if row.starts_at is not None and row.starts_at > now:
        row.status = "scheduled"
        given = Given()
    else:
        given = _start(session, program, row, actor=actor, now=now)
    audit.record(
        session, actor=actor, action="campaign.launched", subject_type="campaign",
        subject_id=row.id, at=now, program_id=program.id, before={"status": "draft"},
        after={"status": row.status, **_given_doc(given)},
    )  # fmt: skip
    session.flush()
    return row, given


def stop(session: Session, program: Program, code: str, *, actor: Actor, now: datetime) -> Campaign:
    """Stop a scheduled or running campaign: nobody else is given anything; results stay."""
    row = get_campaign(session, program, code, lock=True)
    if row.status not in ("scheduled", "running"):
        raise CampaignState(f"campaign {code!r} is {row.status}: only a running one stops")
    before = row.status
    row.status, row.stopped_at = "stopped", now
    if row.launched_at is None or row.launched_at > now:
        row.launched_at = now
    _rules_changed(session, row)
    row.version += 1
    row.updated_at, row.updated_by = now, str(actor)
    _mark_all_pending(session, row)
    outbox.emit(
        session, kind="campaign.ended", program_id=program.id, member_id=None, at=now,
        payload={"program": program.code, "campaign": row.code, "reason": "stopped"},
    )  # fmt: skip
    audit.record(
        session, actor=actor, action="campaign.stopped", subject_type="campaign",
        subject_id=row.id, at=now, program_id=program.id, before={"status": before},
        after={"status": "stopped"},
    )  # fmt: skip
    session.flush()
    return row


def _mark_all_pending(session: Session, row: Campaign) -> None:
    session.execute(
        update(CampaignMember)
        .where(CampaignMember.campaign_id == row.id, CampaignMember.outcome == "assigned")
        .values(outcome="none")
        .execution_options(synchronize_session=False)
    )


def run(session: Session, program: Program, code: str, *, actor: Actor, now: datetime) -> Given:
    """One pass of a campaign's job: start it when due, add members who entered a live
    segment, give whoever is still owed (after a budget raise nobody is: no_budget is final),
    end it after its end."""
    row = get_campaign(session, program, code, lock=True)
    given = Given()
    if row.status == "scheduled" and row.starts_at is not None and row.starts_at <= now:
        given = _start(session, program, row, actor=actor, now=now)
        audit.record(
            session, actor=actor, action="campaign.started", subject_type="campaign",
            subject_id=row.id, at=now, program_id=program.id, after=_given_doc(given),
        )  # fmt: skip
    elif row.status == "running" and (row.ends_at is None or now < row.ends_at):
        added = _assign(session, program, row, now=now) if row.targeting == "live" else 0
        given = _give(session, program, row, actor=actor, now=now)
        given.assigned = added
        given.messages = _message(session, program, row, now=now)
    if row.status == "running" and row.ends_at is not None and row.ends_at <= now:
        row.status = "ended"
        row.version += 1
        _rules_changed(session, row)
        _mark_all_pending(session, row)
        outbox.emit(
            session, kind="campaign.ended", program_id=program.id, member_id=None, at=now,
            payload={"program": program.code, "campaign": row.code, "reason": "schedule"},
        )  # fmt: skip
    session.flush()
    return given


def due(session: Session) -> list[tuple[int, str]]:
    """(program id, code) of the campaigns the job looks at: scheduled or running."""
    rows = session.execute(
        select(Campaign.program_id, Campaign.code)
        .where(Campaign.status.in_(("scheduled", "running")))
        .order_by(Campaign.id)
    )
    return [(program_id, code) for program_id, code in rows]


def _rules_changed(session: Session, row: Campaign) -> None:
    """A rule experiment started or stopped: every worker's cached configuration reloads
    (patron.experiments.arms)."""

    if rule_arms.has_rules(row.arms):
        session.flush()
        config_version.touch(session, row.program_id)


def _json_object(session: Session, fields: dict[str, Any]) -> Any:
    postgres = session.get_bind().dialect.name == "postgresql"
    build = func.jsonb_build_object if postgres else func.json_object
    args: list[Any] = []
    for name, value in fields.items():
        args += [literal(name, String), value]
    return build(*args)


def _message(session: Session, program: Program, row: Campaign, *, now: datetime) -> int:
    """One campaign.offer event per member of each arm with `message` who got the arm's action
    (or whose arm has none) and has no message yet: an INSERT … SELECT per arm, then the
    members are marked. The notify dispatcher sends them (marketing: with consent only)."""
    from patron.events.models import DomainEvent

    total = 0
    for v in variants(row):
        if not v.message:
            continue
        wanted = (
            CampaignMember.campaign_id == row.id,
            CampaignMember.arm == v.key,
            CampaignMember.outcome.in_(("reached", "none")),
            CampaignMember.messaged_at.is_(None),
        )
        action = v.action
        payload = {
            "program": literal(program.code, String),
            "campaign": literal(row.code, String),
            "campaign_name": literal(row.name, String),
            "variant": literal(v.key, String),
            "variant_name": literal(v.name or v.key, String),
            "offer": literal(action.kind, String),
            "member_id": CampaignMember.member_id,
            "points": CampaignMember.points,
            "reward": literal(action.reward, String),
            "ends_at": literal(row.ends_at.isoformat() if row.ends_at else None, String),
        }
        source = (
            select(
                literal(program.id, BigInteger),
                CampaignMember.member_id,
                literal("campaign.offer", String),
                _json_object(session, payload),
                literal(now, UTCDateTime),
                literal(False),
            )
            .where(*wanted)
            .order_by(CampaignMember.member_id)
        )
        n = int(session.scalar(select(func.count()).where(*wanted)) or 0)
        if not n:
            continue
        session.execute(
            insert(DomainEvent).from_select(
                ["program_id", "member_id", "kind", "payload", "at", "dispatched"], source
            )
        )
        session.execute(
            update(CampaignMember)
            .where(*wanted)
            .values(messaged_at=now)
            .execution_options(synchronize_session=False)
        )
        total += n
    return total


# --- results ----------------------------------------------------------------------------------


def window(row: Campaign, period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """[from, to) of `period`: during the campaign (launch to its end, stop or now), or after
    it (its end to now; empty while it runs)."""
    start = row.starts_at if row.status != "scheduled" and row.launched_at else None
    if start is None:
        return None, None
    end = min(t for t in (row.ends_at, row.stopped_at, now) if t is not None)
    if period == "during":
        return start, end
    if end >= now:
        return None, None
    return end, now


@dataclass
class _Arm:
    members: int = 0
    reached: int = 0
    points: int = 0
    rule_points: int = 0
    messages: int = 0
    coupons: int = 0
    redeemed: int = 0
    visits: stats.Moments = field(default_factory=lambda: stats.Moments(0, 0, 0))
    spend: stats.Moments = field(default_factory=lambda: stats.Moments(0, 0, 0))
    cost: stats.Moments = field(default_factory=lambda: stats.Moments(0, 0, 0))
    visitors: int = 0


def _moments(n: int, total: Any, squares: Any) -> stats.Moments:
    return stats.Moments(n, float(total or 0), float(squares or 0))


def _arm_figures(
    session: Session, program: Program, row: Campaign, lo: datetime | None, hi: datetime | None,
    *, during: bool,
) -> dict[str, _Arm]:  # fmt: skip
    """Per arm: members, reached, given, and Σ/Σ² of each member's visits, spend and points
    cost in the window — two GROUP BYs, whatever the number of members."""
    cm = CampaignMember
    in_campaign = select(cm.account_id).where(cm.campaign_id == row.id)
    conds = [Purchase.program_id == program.id, Purchase.account_id.in_(in_campaign)]
    if lo is None or hi is None:
        conds.append(Purchase.id < 0)  # an empty window
    else:
        conds += [Purchase.occurred_at >= lo, Purchase.occurred_at < hi]
    per = (
        select(
            Purchase.account_id.label("account_id"),
            func.count().label("visits"),
            func.sum(Purchase.amount_minor - Purchase.refunded_minor).label("spend"),
            func.sum(Purchase.points_earned - Purchase.reversed_points).label("earned"),
        )
        .where(*conds)
        .group_by(Purchase.account_id)
        .subquery()
    )
    visits = func.coalesce(per.c.visits, 0)
    spend = func.coalesce(per.c.spend, 0)
    cost = func.coalesce(per.c.earned, 0) + (cm.points if during else 0)
    f = lambda x: sql_cast(x, Float)  # noqa: E731 — Σx² as floating point: no overflow
    rows = session.execute(
        select(
            cm.arm,
            func.count(),
            func.sum(case((cm.outcome == "reached", 1), else_=0)),
            func.sum(cm.points),
            func.sum(cm.rule_points),
            func.count(cm.messaged_at),
            func.count(cm.coupon_id),
            func.sum(visits),
            func.sum(f(visits) * f(visits)),
            func.sum(spend),
            func.sum(f(spend) * f(spend)),
            func.sum(cost),
            func.sum(f(cost) * f(cost)),
            func.sum(case((visits > 0, 1), else_=0)),
        )
        .select_from(cm)
        .outerjoin(per, per.c.account_id == cm.account_id)
        .where(cm.campaign_id == row.id)
        .group_by(cm.arm)
    ).all()
    out: dict[str, _Arm] = {}
    for arm, n, reached, points, ruled, messages, coupons, v, vv, s, ss, c, cc, visitors in rows:
        out[arm] = _Arm(
            members=n, reached=int(reached or 0), points=int(points or 0),
            rule_points=int(ruled or 0), messages=int(messages or 0), coupons=coupons,
            visits=_moments(n, v, vv), spend=_moments(n, s, ss), cost=_moments(n, c, cc),
            visitors=int(visitors or 0),
        )  # fmt: skip
    used: list[Any] = [Coupon.used_at.is_not(None)]
    if hi is not None:
        used.append(Coupon.used_at < hi)
    if lo is None:
        used.append(Coupon.id < 0)
    elif not during:
        used.append(Coupon.used_at >= lo)
    for arm, n in session.execute(
        select(cm.arm, func.count())
        .join(Coupon, Coupon.id == cm.coupon_id)
        .where(cm.campaign_id == row.id, *used)
        .group_by(cm.arm)
    ):
        out[arm].redeemed = n
    return out


def _money(minor: float, currency: str) -> Decimal:
    q = quantum(currency)
    return (Decimal(repr(float(minor))) * q).quantize(q, rounding=ROUND_HALF_UP)


def results(
    session: Session, program: Program, row: Campaign, *, period: str = "during",
    language: str = "en", now: datetime,
) -> ResultsOut:  # fmt: skip
    lo, hi = window(row, period, now)
    figures = _arm_figures(session, program, row, lo, hi, during=period == "during")
    names = {v["key"]: (v.get("name") or v["key"]) for v in row.arms}
    actions = {v["key"]: v["action"]["kind"] for v in row.arms}
    order = ([CONTROL] if row.holdout_pct else []) + [v["key"] for v in row.arms]
    control_name = {"en": "Control", "ko": "대조군", "zh": "对照组"}.get(language, "Control")
    cur = program.currency
    arms: list[ArmResult] = []
    for key in order:
        a = figures.get(key, _Arm())
        rate = stats.wilson(a.visitors, a.members)
        arms.append(
            ArmResult(
                arm=key, name=control_name if key == CONTROL else names[key],
                action="none" if key == CONTROL else actions[key], members=a.members,
                reached=a.reached, points_given=a.points, rule_points=a.rule_points,
                messages=a.messages, coupons_given=a.coupons,
                coupons_redeemed=a.redeemed,
                coupon_redemption_rate=round(a.redeemed / a.coupons, 4) if a.coupons else None,
                visits=int(a.visits.total), visits_per_member=round(a.visits.mean, 4),
                visit_rate=round(rate.estimate, 4), visit_rate_lo=round(rate.lo, 4),
                visit_rate_hi=round(rate.hi, 4), spend=_money(a.spend.total, cur),
                spend_per_member=_money(a.spend.mean, cur), points_cost=int(a.cost.total),
                points_cost_per_member=round(a.cost.mean, 2),
            )
        )  # fmt: skip
    uplifts: list[Uplift] = []
    control = figures.get(CONTROL)
    for key in order:
        if key == CONTROL or control is None:
            continue
        a = figures.get(key, _Arm())
        label = names[key]
        enough = a.members >= stats.MIN_MEMBERS and control.members >= stats.MIN_MEMBERS
        for metric, mine, theirs in (
            ("visits", a.visits, control.visits),
            ("spend", a.spend, control.spend),
            ("points_cost", a.cost, control.cost),
        ):
            ci = stats.ratio_uplift(mine, theirs) if enough else None
            uplifts.append(_uplift(key, label, metric, "%", ci, language))
        ci = stats.newcombe(a.visitors, a.members, control.visitors, control.members) if enough \
            else None  # fmt: skip
        uplifts.append(_uplift(key, label, "visit_rate", "pp", ci, language))
    return ResultsOut(
        campaign=row.code, status=row.status, period=period,
        window_from=lo, window_to=hi, confidence=stats.CONFIDENCE, method=METHOD, currency=cur,
        arms=arms, uplifts=uplifts,
    )  # fmt: skip


METHOD = (
    "means per member: variant/control ratio, delta-method interval with Welch's unequal "
    "variances (normal approximation); share who visited: Wilson per arm, Newcombe hybrid "
    "score for the difference; 95 %; at least 30 members per arm and a control mean known to "
    "within 35 % (relative standard error)"
)


def _uplift(
    key: str, label: str, metric: str, unit: str, ci: stats.Interval | None, language: str
) -> Uplift:
    kind = stats.finding(ci)
    r = (lambda x: round(x, 4)) if ci is not None else (lambda x: None)
    return Uplift(
        arm=key, metric=metric, unit=unit,
        estimate=r(ci.estimate) if ci else None, lo=r(ci.lo) if ci else None,
        hi=r(ci.hi) if ci else None, finding=kind,
        verdict=stats.verdict(kind, arm=label, metric=metric, interval=ci, unit=unit,
                              language=language),
    )  # fmt: skip
