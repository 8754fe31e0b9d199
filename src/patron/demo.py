"""The corner-bakery demo program (PRODUCT.md, S0): members and a year of purchases."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from patron.admin import service as staff_users
from patron.audit.service import SYSTEM
from patron.auth.service import create_key
from patron.coupons import use as coupon_use
from patron.coupons.codes import display
from patron.coupons.schemas import UseRequest
from patron.db.engine import Database
from patron.earning import examples as rule_examples
from patron.errors import PatronError
from patron.ledger import jobs
from patron.ledger.schemas import LineIn
from patron.members import service as members
from patron.members.schemas import CardIn, MemberCreate, MemberRef
from patron.portal import signup
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import (
    EarningRate,
    ExpiryPolicy,
    ProgramCreate,
    RedemptionPolicy,
    StoreCreate,
)
from patron.rewards import catalog, redeem
from patron.rewards import jobs as reward_jobs
from patron.rewards.schemas import RewardCreate
from patron.rules import publishing
from patron.rules.model import RuleSetDoc
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest, RefundRequest
from patron.setup import service as setup
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup

BAKERY = ProgramCreate(
    code="bakery",
    name="Corner Bakery Seoul",
    currency="KRW",
    timezone="Asia/Seoul",
    country="KR",
    point_value=Decimal(1),
    earning=EarningRate(mode="per_full_unit", points=10, per_amount=Decimal(1000), rounding="down"),
    earn_on_redeemed=False,
    expiry=ExpiryPolicy(kind="months", months=12),
    pending_days=0,
    redemption=RedemptionPolicy(min_points=1000, step=10, max_share=Decimal(1)),
    negative_balance="allow_debt",
)

BAKERY_RULES = RuleSetDoc.model_validate(
    {
        "combine": "multiply",
        "rounding": "down",
        "rules": [
            {
                "id": "base",
                "name": "10 points per 1,000 KRW",
                "kind": "base_rate",
                "mode": "per_full_unit",
                "points": 10,
                "per_amount": "1000",
            },
            {
                "id": "seasonal-cake",
                "name": "Seasonal cake bonus",
                "kind": "product_bonus",
                "match": {"skus": ["seasonal-cake"]},
                "points_per_unit": 200,
            },
        ],
    }
)

DEMO_RULE_EXAMPLES = {
    name: rule_examples.ExampleIn.model_validate(body)
    for name, body in {
        "basic-latte-25800": {
            "sale": {"amount": 25800, "lines": [{"sku": "latte", "amount": 25800}]},
            "expected_points": 250,
            "note": "a 25,800 KRW sale by a basic member earns 250",
        },
        "gold-latte-25800": {
            "sale": {"amount": 25800, "lines": [{"sku": "latte", "amount": 25800}]},
            "member": {"tier": "gold"},
            "expected_points": 500,
            "note": "gold doubles the base rate",
        },
        "seasonal-cake-gold": {
            "sale": {"amount": 32000, "lines": [{"sku": "seasonal-cake", "amount": 32000}]},
            "member": {"tier": "gold"},
            "expected_points": 840,
            "note": "the cake's 200 points are not multiplied: 320 x 2 + 200",
        },
    }.items()
}

BAKERY_SIGNUP = signup.SignupSettings.model_validate(
    {
        "enabled": True,
        "fields": {"email": "required", "phone": "optional", "birthday": "optional"},
        "verify_with": "email",
        "consents": {"email": True, "sms": True},
    }
)

BAKERY_TIERS = TierSetup.model_validate(
    {
        "policy": {
            "metric": "points",
            "window": "year",
            "upgrade": "immediate",
            "downgrade": "one_level",
            "manual": "keep",
        },
        "tiers": [
            {"code": "basic", "names": {"en": "Basic", "ko": "일반", "zh": "普通"}, "threshold": 0},
            {
                "code": "silver",
                "names": {"en": "Silver", "ko": "실버", "zh": "银卡"},
                "threshold": 5000,
                "multiplier": "1.5",
                "benefits": ["Free drink on your birthday"],
            },
            {
                "code": "gold",
                "names": {"en": "Gold", "ko": "골드", "zh": "金卡"},
                "threshold": 12000,
                "multiplier": "2",
                "extra_expiry_months": 6,
                "benefits": ["Free drink on your birthday", "10% off whole cakes"],
            },
        ],
    }
)

STORES = [("mapo", "마포점 Mapo"), ("yeonnam", "연남점 Yeonnam")]
PRODUCTS = [  # sku, category, price in KRW
    ("baguette", "bread", 4500),
    ("croissant", "pastry", 3800),
    ("salt-bread", "bread", 3200),
    ("cream-bun", "pastry", 2800),
    ("americano", "drink", 4000),
    ("latte", "drink", 4800),
    ("seasonal-cake", "cake", 32000),
    ("cheesecake-slice", "cake", 6500),
    ("sourdough", "bread", 7800),
    ("madeleine-box", "gift", 15000),
]
SURNAMES = "김이박최정강조윤장임한오서신권황안송류홍"
GIVEN = [
    "민지",
    "서연",
    "지훈",
    "도윤",
    "하은",
    "예준",
    "수아",
    "시우",
    "지우",
    "서준",
    "하윤",
    "주원",
    "지민",
    "유진",
    "현우",
    "은서",
    "태윤",
    "다은",
    "건우",
    "채원",
]

# The member the README's walk-through uses for paying with points.
WALKTHROUGH_PHONE = "010-1234-5678"
WALKTHROUGH_EMAIL = "minji@example.com"


# One admin-UI user per role; passwords are generated at load time and printed once.
DEMO_STAFF = [
    ("owner", "owner@demo.patron", "Demo Owner"),
    ("marketer", "marketer@demo.patron", "Demo Marketer"),
    ("support", "support@demo.patron", "Demo Support"),
    ("viewer", "viewer@demo.patron", "Demo Viewer"),
]


@dataclass
class DemoResult:
    members: int
    purchases: int
    refunds: int
    admin_key: str
    pos_key: str
    # (role, e-mail, password) for the admin UI
    staff: list[tuple[str, str, str]] = field(default_factory=list)
    coupon: str = ""  # the walk-through member's unused americano coupon


def _quiet_history(db: Database, now: datetime) -> None:
    """The demo's year of generated history is not news: its events are marked dispatched, so
    the server does not greet 150 members and send 5,000 receipts when it starts. What happens
    from now on (a sale through the API, a reminder job) is delivered. The demo sends every
    message at any hour (no quiet hours) and sends a receipt for each sale, so a sale made in
    the README's walk-through shows up in the message log at once."""
    from sqlalchemy import update

    from patron.audit.service import SYSTEM
    from patron.events.models import DomainEvent
    from patron.notify import settings as notify_settings

    with db.unit_of_work() as session:
        session.execute(update(DomainEvent).values(dispatched=True))
        program = programs.get_program(session, "bakery")
        config = notify_settings.NotifySettings()
        config.events["points.earned"].enabled = True
        config.quiet_hours_start = config.quiet_hours_end
        notify_settings.save(session, program, config, actor=SYSTEM, now=now)


def is_empty(session: Session) -> bool:
    return (session.scalar(select(func.count()).select_from(Program)) or 0) == 0


def load(
    db: Database, *, now: datetime, members_count: int = 150, days: int = 365, seed: int = 7
) -> DemoResult:
    rng = random.Random(seed)
    start = now - timedelta(days=days)
    with db.unit_of_work() as session:
        program = setup.create_program(session, BAKERY, actor=SYSTEM, now=start)
        for code, name in STORES:
            programs.create_store(
                session, program, StoreCreate(code=code, name=name), actor=SYSTEM, now=start
            )
        member_ids: list[int] = []
        for i in range(members_count):
            phone = WALKTHROUGH_PHONE if i == 0 else f"010-{rng.randint(2000, 9999)}-{i:04d}"
            name = "김민지" if i == 0 else rng.choice(SURNAMES) + rng.choice(GIVEN)
            joined = start + timedelta(days=rng.randint(0, days // 2) if i else 0)
            birthday = date(rng.randint(1960, 2005), rng.randint(1, 12), rng.randint(1, 28))
            member = members.create_member(
                session,
                MemberCreate(
                    name=name,
                    phone=phone,
                    email=WALKTHROUGH_EMAIL if i == 0 else f"member{i:04d}@example.com",
                    birthday=birthday,
                    gender=rng.choice(["female", "male", "undisclosed"]),
                    language="ko",
                    marketing_consent=i == 0 or rng.random() < 0.6,
                    preferences={"favourite": rng.choice(PRODUCTS)[0]},
                    cards=[CardIn(number=f"BKR{100000 + i}", kind=rng.choice(["physical", "app"]))],
                    program="bakery",
                ),
                program=program,
                actor=SYSTEM,
                now=joined,
            )
            member_ids.append(member.id)
        publishing.publish(
            session,
            program,
            BAKERY_RULES,
            actor=SYSTEM,
            now=start,
            note="seasonal cake bonus (PRODUCT.md)",
        )
        # Silver ×1.5 and Gold ×2 on points earned in the calendar year, reached at once.
        tiers.set_tiers(session, program, BAKERY_TIERS, actor=SYSTEM, now=start)
        # Rule tests: sales the rules must price as written (`patron rules test`).
        for name, example in DEMO_RULE_EXAMPLES.items():
            rule_examples.save(session, program, name, example, actor=SYSTEM, now=start)
        # Visitors may join on the member page (/m/bakery/join), verified by e-mail.
        signup.save(session, program, BAKERY_SIGNUP, actor=SYSTEM, now=start)
        # Members may give each other points (docs/moves.md): up to 5,000 a transfer, 10,000 a day.
        from patron.moves import transfer as transfers

        transfers.set_settings(session, program, enabled=True, max_per_transfer=5000,
                               max_per_day=10_000, actor=SYSTEM, now=start)  # fmt: skip
        _admin, admin_key = create_key(
            session, name="demo admin", scopes=["admin"], actor=SYSTEM, now=now
        )
        # The till's key reaches the bakery only (403 in any other program).
        _till, pos_key = create_key(
            session,
            name="demo till",
            scopes=["pos"],
            programs=[program.code],
            actor=SYSTEM,
            now=now,
        )
        staff: list[tuple[str, str, str]] = []
        for role, email, name in DEMO_STAFF:
            password = staff_users.generate_password()
            staff_users.create_user(
                session,
                email=email,
                name=name,
                role=role,
                password=password,
                actor=SYSTEM,
                now=now,
            )
            staff.append((role, email, password))

    # Sales in time order, a day per transaction, so lots expire and redeem as in real life.
    visits: list[tuple[datetime, int]] = []
    for index, member_id in enumerate(member_ids):
        per_month = 6 if index == 0 else rng.choice([1, 2, 3, 4, 6])
        t = start + timedelta(hours=rng.randint(0, 24 * 20))
        while t < now - timedelta(hours=2):
            local_hour = rng.choice([8, 9, 10, 12, 13, 15, 17, 18, 19])
            visit = t.replace(hour=(local_hour - 9) % 24, minute=rng.randint(0, 59))
            if visit < now - timedelta(hours=1):
                visits.append((visit, member_id))
            t += timedelta(days=rng.expovariate(per_month / 30.0) + 0.5)
    visits.sort()

    count = refunds = 0
    balances: dict[int, int] = {}
    day_groups: dict[date, list[tuple[datetime, int]]] = {}
    for visit, member_id in visits:
        day_groups.setdefault(visit.date(), []).append((visit, member_id))
    for day in sorted(day_groups):
        with db.unit_of_work() as session:
            program = programs.get_program(session, "bakery")
            for visit, member_id in day_groups[day]:
                lines = []
                for n in range(rng.choice([1, 1, 2, 2, 3, 4])):
                    sku, category, price = rng.choice(PRODUCTS)
                    qty = rng.choice([1, 1, 1, 2])
                    lines.append(
                        LineIn(
                            id=str(n + 1),
                            sku=sku,
                            category=category,
                            quantity=Decimal(qty),
                            amount=Decimal(price * qty),
                        )
                    )
                amount = sum((line.amount for line in lines), Decimal(0))
                balance = balances.get(member_id, 0)
                spend = 0
                # The walk-through member saves up, so the README can pay with points.
                if member_id != member_ids[0] and balance >= 1000 and rng.random() < 0.25:
                    spend = purchases.max_spend(program, amount, balance)
                    spend = min(spend, rng.choice([1000, 2000, 3000, 5000]))
                    spend -= spend % program.redeem_step
                    if spend < program.redeem_min_points:
                        spend = 0
                count += 1
                order = f"BKR-{visit:%Y%m%d}-{count:05d}"
                out = purchases.purchase(
                    session,
                    program,
                    PurchaseRequest(
                        external_id=order,
                        member=MemberRef(id=member_id),
                        amount=amount,
                        lines=lines,
                        store=rng.choice(STORES)[0],
                        channel="pos",
                        occurred_at=visit,
                        points_to_spend=spend,
                    ),
                    actor=SYSTEM,
                    now=visit,
                )
                balances[member_id] = out["totals"]["balance"]
                if rng.random() < 0.02:
                    refunds += 1
                    later = visit + timedelta(minutes=rng.randint(5, 90))
                    req = (
                        RefundRequest(refund_id=f"{order}-R1", full=True, occurred_at=later)
                        if rng.random() < 0.5
                        else RefundRequest(
                            refund_id=f"{order}-R1",
                            lines=[{"id": "1", "quantity": 1}],
                            occurred_at=later,
                        )
                    )
                    back = purchases.refund(session, program, order, req, actor=SYSTEM, now=later)
                    balances[member_id] = back["totals"]["balance"]
    jobs.run_expiry(db, now)
    coupon = _rewards(db, now, member_ids, rng)
    _milestones(db, now)
    _quiet_history(db, now)
    _engagement(db, now)
    if days >= CAMPAIGN_MIN_DAYS:
        _campaign(db, now)  # before the fraud controls: its cohort's sales are history
    _fraud(db, now, member_ids[2])
    count += 1  # the sale held for review
    if db.dialect == "postgresql":
        # Fresh planner statistics for the rows just loaded: without them (autovacuum off or not
        # yet run) the reports plan for empty tables and the dashboard takes seconds.
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return DemoResult(
        members=len(member_ids),
        purchases=count,
        refunds=refunds,
        admin_key=admin_key,
        pos_key=pos_key,
        staff=staff,
        coupon=coupon,
    )


DEMO_REWARDS: list[dict[str, object]] = [
    {
        "code": "americano",
        "kind": "goods",
        "names": {"ko": "아메리카노 무료", "zh": "免费美式咖啡", "en": "Free americano"},
        "descriptions": {
            "ko": "매장에서 아메리카노 한 잔을 드립니다.",
            "zh": "到店可领取一杯美式咖啡。",
            "en": "One americano at any of our bakeries.",
        },
        "points_cost": 1500,
        "tier_costs": {"gold": 1200},
        "value": "1500",
        "stock": 500,
        "valid_days": 30,
    },
    {
        "code": "five-off",
        "kind": "fixed_discount",
        "names": {"ko": "5,000원 할인", "zh": "立减5,000韩元", "en": "5,000 KRW off"},
        "descriptions": {
            "ko": "30,000원 이상 구매 시 5,000원 할인",
            "zh": "消费满30,000韩元立减5,000韩元",
            "en": "5,000 KRW off a purchase of 30,000 or more",
        },
        "points_cost": 4000,
        "value": "5000",
        "discount": "5000",
        "min_spend": "30000",
        "valid_days": 30,
        "stack_group": "basket",
    },
    {
        "code": "croissant",
        "kind": "free_product",
        "names": {"ko": "크루아상 무료", "zh": "免费可颂", "en": "Free croissant"},
        "points_cost": 800,
        "sku": "CROISSANT",
        "value": "3200",
        "valid_days": 14,
        "limit_per_day": 1,
    },
]


def _engagement(db: Database, now: datetime) -> None:
    """A saved segment (gold members dormant 60 days) and an after-visit survey worth 100 points
    (docs/engagement.md, docs/surveys.md); the survey invites members after their next sales."""
    from patron.segments import service as segments
    from patron.segments.schemas import SegmentIn
    from patron.surveys import service as surveys
    from patron.surveys.schemas import SurveyIn

    label = lambda ko, zh, en: {"ko": ko, "zh": zh, "en": en}  # noqa: E731
    with db.unit_of_work() as session:
        program = session.scalars(select(Program).where(Program.code == "bakery")).one()
        segment = {
            "code": "gold-dormant",
            "name": "Gold members dormant 60 days",
            "definition": {
                "condition": {
                    "type": "all",
                    "of": [{"type": "tier", "tiers": ["gold"]}, {"type": "dormant", "days": 60}],
                }
            },
        }
        segments.create(session, program, SegmentIn.model_validate(segment), actor=SYSTEM, now=now)
        survey = {
            "code": "after-visit",
            "status": "active",
            "title": label("오늘 방문은 어떠셨나요?", "今天的光临体验如何？", "How was your visit?"),
            "fallback_language": "ko",
            "questions": [
                {"key": "overall", "kind": "rating", "label": label("전체 만족도", "总体满意度", "Overall")},
                {"key": "comment", "kind": "text", "required": False,
                 "label": label("한마디", "还有什么想说的？", "Anything else?")},
            ],
            "points": 100,
            "cooldown_days": 30,
        }  # fmt: skip
        surveys.create(session, program, SurveyIn.model_validate(survey), actor=SYSTEM, now=now)


DEMO_MILESTONES: list[dict[str, object]] = [
    {"code": "regular", "kind": "visits", "target": 8, "window": "month", "repeat": True,
     "names": {"ko": "단골손님", "zh": "常客", "en": "Regular"},
     "descriptions": {"ko": "한 달에 8번 방문", "zh": "一个月内光临 8 次", "en": "8 visits in a month"},
     "points": 300},
    {"code": "six-in-a-row", "kind": "streak", "target": 6,
     "names": {"ko": "6개월 연속", "zh": "连续六个月", "en": "Six months in a row"},
     "descriptions": {"ko": "6개월 연속 매달 구매", "zh": "连续六个月每月消费",
                      "en": "A purchase every month, six months in a row"}, "points": 500},
    {"code": "big-fan", "kind": "visits", "target": 40,
     "names": {"ko": "빵 마니아", "zh": "面包达人", "en": "Bread lover"},
     "descriptions": {"ko": "40번 구매", "zh": "消费 40 次", "en": "40 purchases"},
     "points": 1000},
]  # fmt: skip


def _milestones(db: Database, now: datetime) -> None:
    """Three goals (docs/engagement.md) evaluated once over the demo's history, so some members
    have badges (their points credited through the ledger) and the rest see progress bars."""
    from patron.milestones import jobs as milestone_jobs
    from patron.milestones import service as milestones
    from patron.milestones.schemas import MilestoneIn

    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        for body in DEMO_MILESTONES:
            milestones.create(session, program, MilestoneIn.model_validate(body), actor=SYSTEM,
                              now=now - timedelta(days=1))  # fmt: skip
    milestone_jobs.run_program(db, "bakery", now=now)


def _fraud(db: Database, now: datetime, member_id: int) -> None:
    """Modest fraud controls (docs/fraud.md), and one large sale held for review in the queue."""
    from patron.fraud import settings as fraud

    doc = {
        "member": {"sales_per_day": 20},
        "store": {"sales_per_minute": 120},
        "duplicate_window_minutes": 10,
        "hold_points_above": 5000,
    }
    with db.unit_of_work() as session:
        program = session.scalars(select(Program).where(Program.code == "bakery")).one()
        fraud.save(session, program, fraud.parse(doc), actor=SYSTEM, now=now)
    with db.unit_of_work() as session:
        sale = PurchaseRequest(
            external_id="MAPO-REVIEW-0001",
            member=MemberRef(id=member_id),
            amount=Decimal(640000),
            store=STORES[0][0],
            occurred_at=now - timedelta(minutes=30),
        )
        purchases.purchase_by_code(session, "bakery", sale, actor=SYSTEM, now=now)


def _rewards(db: Database, now: datetime, member_ids: list[int], rng: random.Random) -> str:
    """The catalog of the issue's example, some redemptions over the last month (used,
    unused, expired), and an unused americano for the walk-through member: its code."""

    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        for body in DEMO_REWARDS:
            catalog.create_reward(
                session, program, RewardCreate.model_validate(body), actor=SYSTEM,
                now=now - timedelta(days=60),
            )  # fmt: skip
    for member_id in rng.sample(member_ids[1:], min(12, len(member_ids) - 1)):
        at = now - timedelta(days=rng.randint(1, 45), hours=rng.randint(0, 8))
        code = rng.choice(["americano", "croissant"])
        try:
            with db.unit_of_work() as session:
                program = programs.get_program(session, "bakery")
                _r, issued, _a = redeem.redeem(
                    session, program, code, member=members.get_member(session, member_id),
                    quantity=1, store=None, channel="pos", actor=SYSTEM, now=at,
                )  # fmt: skip
                if rng.random() < 0.6:
                    basket = UseRequest(
                        amount=Decimal(4500), order=f"BKR-R-{issued[0].id:05d}",
                        store=STORES[0][0], lines=[LineIn(sku="CROISSANT", amount=Decimal(3200))],
                    )  # fmt: skip
                    coupon_use.use(
                        session, program, issued[0].code, basket, actor=SYSTEM,
                        now=at + timedelta(hours=1),
                    )  # fmt: skip
        except PatronError:
            continue  # not enough points (the transaction rolled back): that member skips
    reward_jobs.expire_coupons(db, now)
    try:
        with db.unit_of_work() as session:
            program = programs.get_program(session, "bakery")
            _r, issued, _a = redeem.redeem(
                session, program, "americano", member=members.get_member(session, member_ids[0]),
                quantity=1, store=None, channel="pos", actor=SYSTEM, now=now - timedelta(hours=1),
            )  # fmt: skip
            return display(issued[0].code)
    except PatronError:
        return ""  # a short demo history: not enough points yet


# The win-back campaign's cohort: lapsed gold members added beside the demo's members. They
# lapsed 300 days ago, so a shorter demo history (the tests' small demos) leaves them out.
LAPSED_MEMBERS = 420
CAMPAIGN_MIN_DAYS = 300


def _campaign(db: Database, now: datetime) -> None:
    """An A/B campaign on gold-dormant (docs/engagement.md): 420 lapsed gold members (one
    purchase a year ago) are won back 6 weeks ago with a 5,000 KRW coupon (variant a) or 2,000
    bonus points (variant b), 50/50 with a 10 % holdout; then weeks of simulated sales in which
    the coupon brings more of them back than the points, and both more than the control."""
    from patron.campaigns import service as campaigns
    from patron.campaigns.schemas import CampaignIn
    from patron.sales import pipeline
    from patron.sales.schemas import AdjustRequest

    rng = random.Random(18)
    lapsed_at = now - timedelta(days=300)
    launch_at = now - timedelta(days=42)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        ids: list[int] = []
        for i in range(LAPSED_MEMBERS):
            member = members.create_member(
                session,
                MemberCreate(
                    name=rng.choice(SURNAMES) + rng.choice(GIVEN),
                    phone=f"010-7{i:03d}-{i:04d}",
                    language="ko",
                    marketing_consent=rng.random() < 0.6,
                    program="bakery",
                ),
                program=program,
                actor=SYSTEM,
                now=lapsed_at,
            )
            ids.append(member.id)
            pipeline.adjust(
                session, program,
                AdjustRequest(member=MemberRef(id=member.id), points=12000, qualifying=True,
                              reason="gold welcome (lapsed cohort)"),
                actor=SYSTEM, now=lapsed_at,
            )  # fmt: skip
            at = lapsed_at + timedelta(days=rng.randint(1, 30), hours=rng.randint(0, 9))
            purchases.purchase(
                session, program,
                PurchaseRequest(external_id=f"LAPSED-{i:04d}", member=MemberRef(id=member.id),
                                amount=Decimal(rng.choice([8000, 12000, 23000])),
                                store=STORES[0][0], occurred_at=at),
                actor=SYSTEM, now=at,
            )  # fmt: skip
        body = {
            "code": "winback-ab", "name": "Win back gold: coupon vs points",
            "segment": "gold-dormant", "holdout_pct": 10, "budget_points": 400_000,
            "ends_at": (launch_at + timedelta(days=28)).isoformat(),
            "variants": [
                {"key": "a", "name": "Coupon", "share": 50,
                 "action": {"kind": "coupon", "reward": "five-off"}},
                {"key": "b", "name": "Bonus points", "share": 50,
                 "action": {"kind": "points", "points": 2000}},
            ],
        }  # fmt: skip
        campaigns.create(session, program, CampaignIn.model_validate(body), actor=SYSTEM,
                         now=launch_at)  # fmt: skip
        campaigns.launch(session, program, "winback-ab", actor=SYSTEM, now=launch_at)
    from patron.coupons.models import Coupon
    from patron.experiments.models import CampaignMember

    with db.unit_of_work(readonly=True) as session:
        arms = session.execute(
            select(CampaignMember.member_id, CampaignMember.arm, Coupon.code)
            .outerjoin(Coupon, Coupon.id == CampaignMember.coupon_id)
            .order_by(CampaignMember.member_id)
        ).all()
    back = {"control": 0.35, "a": 0.6, "b": 0.45}
    sales: list[tuple[datetime, int, str | None]] = []
    for member_id, arm, code in arms:
        if rng.random() >= back.get(arm, 0):
            continue
        for n in range(rng.choice([1, 2, 2, 3])):
            at = launch_at + timedelta(days=rng.uniform(1, 40), hours=rng.randint(0, 9))
            use = n == 0 and at < launch_at + timedelta(days=25) and rng.random() < 0.8
            sales.append((at, member_id, code if use else None))
    sales.sort()
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        for n, (at, member_id, used) in enumerate(sales):
            purchases.purchase(
                session, program,
                PurchaseRequest(external_id=f"WINBACK-{n:04d}", member=MemberRef(id=member_id),
                                amount=Decimal(rng.choice([32000, 35000, 41000]) if used
                                               else rng.choice([6000, 9000, 14000])),
                                coupons=[used] if used else [], store=STORES[0][0],
                                occurred_at=at),
                actor=SYSTEM, now=at,
            )  # fmt: skip
        campaigns.run(session, program, "winback-ab", actor=SYSTEM, now=now)  # ends it
