"""Each worker's copy of what an earn reads about its program, kept exact by a version token.

An earn needs the program's settings, its stores, the published rule set (parsed), the tier
policy with its tiers and the running rule experiments (patron.experiments.arms). They change
rarely, so each worker keeps them in memory, keyed by the
program's `config_version`: a token that changes (to a new random value, not a counter, so a
database rebuilt under a running worker can never match an old token) in the same transaction
as every change to the program, its stores, its rule set or its tiers. The earn reads the token
in the statement that locks the member's account, which runs anyway, and reloads the
configuration when the token differs: a change committed through any worker, the CLI or another
process is seen by the very next earn everywhere. Nothing expires by time.

The token is `patron.db.config_version`'s: a `before_flush` hook bumps it for any new, changed or
deleted program, store, rule-set version, tier policy or tier definition, and `touch` for changes
made with Core statements.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Engine, literal_column, select
from sqlalchemy.orm import Session

from patron.errors import Conflict, NotFound
from patron.experiments import arms as rule_arms
from patron.ledger.expiry import ExpiryRule
from patron.programs.models import Program, Store
from patron.rules.model import RuleSetDoc
from patron.tiers.models import TierDefinition, TierPolicy

if TYPE_CHECKING:
    from patron.fraud.rules import Rules as FraudRules
    from patron.rules.service import Needs


@dataclass(frozen=True)
class TierDef:
    code: str
    rank: int
    threshold: int
    multiplier: Decimal
    extra_expiry_months: int
    # The tier's own expiry policy; kind None: the program's (extra months apply to either).
    expiry_kind: str | None = None
    expiry_months: int = 0
    expiry_days: int = 0


@dataclass(frozen=True)
class TierPolicyConf:
    metric: str
    window: str
    rolling_months: int
    upgrade: str


@dataclass(frozen=True)
class ProgramConfig:
    """A read-only snapshot of one program's configuration at one `config_version`.

    Attribute names match `Program`'s, so the money and redemption helpers take either.
    """

    version: int
    id: int
    code: str
    currency: str
    timezone: str
    country: str
    point_value: Decimal
    earn_on_redeemed: bool
    expiry_kind: str
    expiry_months: int
    expiry_days: int
    pending_days: int
    redeem_min_points: int
    redeem_step: int
    redeem_max_share: Decimal
    negative_balance: str
    rule_version: int
    doc: RuleSetDoc
    needs: Needs
    stores: Mapping[str, int]
    store_codes: Mapping[int, str]
    policy: TierPolicyConf | None
    tiers: tuple[TierDef, ...]  # lowest rank first
    tier_by_code: Mapping[str, TierDef] = field(default_factory=dict)
    closed_stores: frozenset[str] = frozenset()  # switched off: they take no sales
    fraud: FraudRules | None = None  # the program's fraud controls; None: none (docs/fraud.md)
    # Running campaigns with a rules arm (rule experiments, patron.experiments.arms); `needs`
    # covers their rules too.
    rule_campaigns: tuple[rule_arms.RuleCampaign, ...] = ()

    def store_id_of(self, code: str) -> int | None:
        """The id of an open store; None for a code the program does not have."""
        if code in self.closed_stores:
            raise store_closed(code)
        return self.stores.get(code)

    def expiry_rule(self, tier: TierDef | None) -> ExpiryRule:
        """The expiry policy of points earned in `tier` (None: no tier): the tier's own
        policy if it sets one, else the program's, lengthened by the tier's extra months."""
        extra = tier.extra_expiry_months if tier is not None else 0
        if tier is not None and tier.expiry_kind is not None:
            return ExpiryRule(tier.expiry_kind, tier.expiry_months, tier.expiry_days, extra)
        return ExpiryRule(self.expiry_kind, self.expiry_months, self.expiry_days, extra)

    def rolling_rule(self, tier_code: str | None) -> ExpiryRule | None:
        """The rolling policy of an account holding `tier_code`, or None if its dates do not
        roll (`ledger.rolling`: the tier's own policy, else the program's)."""
        rule = self.expiry_rule(self.tier_by_code.get(tier_code) if tier_code else None)
        return rule if rule.kind == "rolling" else None

    @property
    def any_rolling(self) -> bool:
        return self.expiry_kind == "rolling" or any(t.expiry_kind == "rolling" for t in self.tiers)

    def rank_of(self, code: str | None) -> int:
        tier = self.tier_by_code.get(code) if code is not None else None
        return tier.rank if tier is not None else -1

    @property
    def top_rank(self) -> int:
        return self.tiers[-1].rank if self.tiers else -1


class _EngineCache:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.configs: dict[int, ProgramConfig] = {}


_caches: weakref.WeakKeyDictionary[Engine, _EngineCache] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _cache(session: Session) -> _EngineCache:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    found = _caches.get(engine)
    if found is None:
        with _lock:
            found = _caches.setdefault(engine, _EngineCache())
    return found


def program_id(session: Session, code: str) -> int:
    """The id of the program with `code` (codes never change); NotFound like get_program."""
    cache = _cache(session)
    found = cache.ids.get(code)
    if found is None:
        found = session.scalar(select(Program.id).where(Program.code == code))
        if found is None:
            raise NotFound(f"no program with code {code!r}", code="program_not_found")
        cache.ids[code] = found
    return found


def cached(session: Session, program_id: int) -> ProgramConfig | None:
    """The configuration this worker holds for the program, whatever its version."""
    return _cache(session).configs.get(program_id)


def current(session: Session, program_id: int, version: int | None) -> ProgramConfig:
    """The configuration at `version` (read by the caller this transaction): the cached one if
    it is that version, else loaded now."""
    config = _cache(session).configs.get(program_id)
    if config is not None and config.version == version:
        return config
    return load(session, program_id)


def forget(session: Session) -> None:
    """Drop what this worker holds for the session's database (tests)."""
    cache = _cache(session)
    cache.ids.clear()
    cache.configs.clear()


def load(session: Session, program_id: int) -> ProgramConfig:
    """Read the configuration and keep it under the token read *first*: a change committed
    while the rest is read leaves a newer token in the database, so the next earn reloads."""
    from patron.fraud.rules import load_rules
    from patron.rules import service as rules

    found = session.execute(
        select(Program, literal_column("programs.config_version", BigInteger)).where(
            Program.id == program_id
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"no program with id {program_id}", code="program_not_found")
    program, version = found
    rows = session.execute(
        select(Store.id, Store.code, Store.active).where(Store.program_id == program_id)
    ).all()
    stores = {code: store_id for store_id, code, _active in rows}
    closed = frozenset(code for _id, code, active in rows if not active)
    doc = rules.document(session, program)
    rule_campaigns = rule_arms.load(session, program_id, doc)
    policy_row = session.scalars(
        select(TierPolicy).where(TierPolicy.program_id == program_id)
    ).one_or_none()
    tiers = tuple(
        TierDef(
            code=t.code,
            rank=t.rank,
            threshold=t.threshold,
            multiplier=t.multiplier,
            extra_expiry_months=t.extra_expiry_months or 0,
            expiry_kind=t.expiry_kind,
            expiry_months=t.expiry_months or 0,
            expiry_days=t.expiry_days or 0,
        )
        for t in session.scalars(
            select(TierDefinition)
            .where(TierDefinition.program_id == program_id)
            .order_by(TierDefinition.rank)
        )
    )
    config = ProgramConfig(
        version=int(version or 0),
        id=program.id,
        code=program.code,
        currency=program.currency,
        timezone=program.timezone,
        country=program.country,
        point_value=program.point_value,
        earn_on_redeemed=program.earn_on_redeemed,
        expiry_kind=program.expiry_kind,
        expiry_months=program.expiry_months,
        expiry_days=program.expiry_days or 0,
        pending_days=program.pending_days,
        redeem_min_points=program.redeem_min_points,
        redeem_step=program.redeem_step,
        redeem_max_share=program.redeem_max_share,
        negative_balance=program.negative_balance,
        rule_version=program.rule_version,
        doc=doc,
        needs=rules.needs(rule_arms.with_every_arm(doc, rule_campaigns)),
        stores=stores,
        store_codes={store_id: code for code, store_id in stores.items()},
        closed_stores=closed,
        policy=TierPolicyConf(
            metric=policy_row.metric,
            window=policy_row.window,
            rolling_months=policy_row.rolling_months,
            upgrade=policy_row.upgrade,
        )
        if policy_row is not None
        else None,
        tiers=tiers,
        tier_by_code={t.code: t for t in tiers},
        fraud=load_rules(session, program_id),
        rule_campaigns=rule_campaigns,
    )
    cache = _cache(session)
    cache.configs[program_id] = config
    cache.ids[program.code] = program_id
    return config


def store_closed(code: str) -> Conflict:
    """A sale (or quote) naming a store that was switched off."""
    return Conflict(f"store {code!r} is switched off and takes no sales", code="store_closed")
