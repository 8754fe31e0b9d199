"""Everything the Member 360° page shows, read in one transaction through the services' public
functions (members, ledger views, tiers, rules explanations, audit). No business rule lives here:
this module only gathers and labels what the services compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from patron import formats
from patron.admin.service import actor_labels
from patron.audit import service as audit
from patron.audit.models import AuditRecord
from patron.coupons import lookup
from patron.coupons.models import Coupon
from patron.earning import events
from patron.errors import NotFound
from patron.events import service as deliveries
from patron.events.models import Delivery, DeliveryAttempt
from patron.ledger import views
from patron.ledger.models import Account
from patron.ledger.schemas import EntryOut, LotOut, Totals
from patron.members import consent
from patron.members import service as members
from patron.members.models import ConsentRecord
from patron.members.phone import national_format
from patron.members.schemas import MemberOut
from patron.members.service import member_programs
from patron.programs.models import Program
from patron.rewards import catalog as rewards_catalog
from patron.rewards import views as rewards_views
from patron.rewards.schemas import CouponOut
from patron.tiers import progress as tier_progress
from patron.tiers import service as tiers
from patron.tiers.schemas import TierChangeOut

HISTORY_PAGE = 25
EXPIRING_DAYS = 30
MESSAGES = 20
COUPONS = 50


@dataclass(frozen=True)
class HistoryRow:
    entry: EntryOut
    explanation: list[str]
    actor: str


@dataclass(frozen=True)
class LotRow:
    lot: LotOut
    valid_until: date | None  # the last local day its points can be used
    expiring: bool  # within EXPIRING_DAYS


@dataclass(frozen=True)
class CouponRow:
    coupon: CouponOut
    reward_name: str  # in the staff member's language
    last_day: date | None  # the last local day it can be used
    open: bool  # issued and not expired: staff may cancel or reissue it


@dataclass(frozen=True)
class TierChoice:
    code: str
    name: str


@dataclass
class Member360:
    member: MemberOut
    phone: str | None
    programs: list[Program]
    program: Program | None
    tz: ZoneInfo
    totals: Totals | None = None
    history: list[HistoryRow] = field(default_factory=list)
    next_cursor: str | None = None
    lots: list[LotRow] = field(default_factory=list)
    progress: tier_progress.ProgressOut | None = None
    tier_choices: list[TierChoice] = field(default_factory=list)
    tier_names: dict[str, str] = field(default_factory=dict)
    tier_history: list[TierChangeOut] = field(default_factory=list)
    # Last local days (the stored instants are the midnights that end them).
    tier_valid_last_day: date | None = None
    tier_manual_last_day: date | None = None
    changes: list[AuditRecord] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # Messages sent (or not) to the member in this program, newest first, with their tries.
    messages: list[Delivery] = field(default_factory=list)
    message_log: dict[int, list[DeliveryAttempt]] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    consent_history: list[ConsentRecord] = field(default_factory=list)
    # The member's coupons in this program, newest first (rewards/_coupons.html shows them).
    coupons: list[CouponRow] = field(default_factory=list)


def pick_program(programs: list[Program], code: str | None) -> Program | None:
    """The program asked for, else the member's first; None when the member is in none."""
    return next((p for p in programs if p.code == code), programs[0] if programs else None)


def tier_name(names: dict[str, str], code: str, lang: str) -> str:
    return names.get(lang) or names.get("en") or code


def load(
    session: Session,
    member_id: int,
    *,
    program_code: str | None,
    lang: str,
    now: datetime,
    date_from: date | None = None,
    date_to: date | None = None,
    cursor: str | None = None,
    history_limit: int = HISTORY_PAGE,
) -> Member360:
    """The page's data. Raises the services' NotFound for an unknown member and Invalid for a
    date range that ends before it starts."""
    member = members.get_member(session, member_id)
    programs = member_programs(session, member_id)
    program = pick_program(programs, program_code)
    page = Member360(
        member=members.to_out(session, member),
        phone=national_format(member.phone),
        programs=programs,
        program=program,
        tz=ZoneInfo(program.timezone if program else "UTC"),
    )
    actors: set[str] = set()
    if program is not None:
        account = views.get_account(session, program, member_id)
        page.totals = views.totals(session, account, now)
        lo, hi = views.local_day_bounds(program, date_from, date_to)
        entries, page.next_cursor = views.history(
            session, account, lo=lo, hi=hi, cursor=cursor, limit=history_limit
        )
        stores = views.store_codes(session, program.id)
        currency = program.currency

        def money(value: Any) -> str:  # "₩9,800", as the rest of the page writes money
            return formats.money(value, currency, lang)

        for entry in entries:
            why = events.explain_entry(session, program, entry.id, lang, money=money)
            page.history.append(HistoryRow(views.entry_out(entry, stores), why.lines, entry.actor))
            actors.add(entry.actor)
        soon = {
            lot.id
            for lot in views.lots(session, account, now=now, expiring_within_days=EXPIRING_DAYS)
        }
        page.lots = [
            LotRow(
                lot,
                views.valid_until(lot.expires_at, page.tz) if lot.expires_at else None,
                lot.id in soon,
            )
            for lot in views.lots(session, account, now=now)
        ]
        _tiers(session, page, program, account, lang, now)
        actors.update(change.actor for change in page.tier_history)
        page.messages, _more = deliveries.list_deliveries(
            session, program, member_id=member_id, limit=MESSAGES, messages_only=True
        )
        page.message_log = deliveries.attempts_of(session, [d.id for d in page.messages])
        page.coupons = coupon_rows(
            session,
            program,
            rewards_views.member_coupons(session, program, member_id, limit=COUPONS),
            lang=lang,
            now=now,
        )
    page.consent = consent.current_all(session, member)
    page.consent_history = consent.history(session, member_id, limit=10)
    actors.update(record.actor for record in page.consent_history)
    page.changes = audit.history(session, subject_type="member", subject_id=member_id, limit=20)
    actors.update(record.actor for record in page.changes)
    page.labels = actor_labels(session, actors)
    return page


def _tiers(
    session: Session, page: Member360, program: Program, account: Account, lang: str, now: datetime
) -> None:
    try:
        page.progress = tier_progress.progress(session, program, account, now)
    except tier_progress.TiersNotConfigured:
        return
    if page.progress.valid_until is not None:
        page.tier_valid_last_day = views.valid_until(page.progress.valid_until, page.tz)
    if page.progress.manual_until is not None:
        page.tier_manual_last_day = views.valid_until(page.progress.manual_until, page.tz)
    for tier in tiers.definitions(session, program.id):
        name = tier_name(dict(tier.names), tier.code, lang)
        page.tier_choices.append(TierChoice(tier.code, name))
        page.tier_names[tier.code] = name
    page.tier_history = list(reversed(tiers.history(session, program, account.member_id)))


def coupon_rows(
    session: Session, program: Program, coupons: list[Coupon], *, lang: str, now: datetime
) -> list[CouponRow]:
    """Coupons as the rewards API shows them, with the reward's name and the last day."""
    if not coupons:
        return []
    tz = ZoneInfo(program.timezone)
    names = {
        r.code: rewards_catalog.name_in(r, lang)
        for r in rewards_catalog.list_rewards(session, program)
    }
    return [
        CouponRow(
            coupon=shown,
            reward_name=names.get(shown.reward, shown.reward),
            last_day=views.valid_until(shown.expires_at, tz) if shown.expires_at else None,
            open=lookup.state_refusal(row, now) is None,
        )
        for row, shown in zip(
            coupons, rewards_views.coupons_out(session, program, coupons), strict=True
        )
    ]


def export_rows(
    session: Session,
    member_id: int,
    *,
    program_code: str | None,
    date_from: date | None,
    date_to: date | None,
) -> tuple[Program, list[list[object]]]:
    """The member's history as the API's export has it (ledger.views.export_rows)."""
    members.get_member(session, member_id)
    program = pick_program(member_programs(session, member_id), program_code)
    if program is None:
        raise NotFound(
            f"member {member_id} is in no program, so has no history", code="account_not_found"
        )
    account = views.get_account(session, program, member_id)
    lo, hi = views.local_day_bounds(program, date_from, date_to)
    return program, views.export_rows(session, program, account, lo=lo, hi=hi, kinds=None)
