"""Rule experiments: the earning rules of a campaign's arm, added to the program's rule set for
the arm's members while the campaign runs.

The program's cached configuration (`patron.sales.program_cache`) holds the running campaigns
that have a rules arm (`RuleCampaign`), loaded with the rule set and kept exact by the same
version token: launching, starting, stopping or ending such a campaign touches it. A sale reads
which of those campaigns' arms its member is in with one query per planning round (none when
no rule campaign runs); the planner then evaluates the program's rule set plus the member's
arms' rules with the same pure engine (`patron.rules.engine.evaluate`), and once without them
for what the arms added (the campaign's `rule_points`). Each breakdown step of an arm's rule
names the campaign and the variant, so the explanation says "winback-ab · variant B".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.experiments.models import Campaign, CampaignMember
from patron.rules.model import Rule, RuleSetDoc

_RULES = TypeAdapter(list[Rule])


@dataclass(frozen=True)
class RuleArm:
    campaign_id: int
    campaign: str  # the campaign's code
    campaign_name: str
    arm: str  # the variant's key
    arm_name: str
    rules: tuple[Any, ...]  # parsed rules, their ids unique within the program's rule set


@dataclass(frozen=True)
class RuleCampaign:
    id: int
    code: str
    starts_at: datetime | None
    ends_at: datetime | None
    arms: Mapping[str, RuleArm]

    def runs_at(self, at: datetime) -> bool:
        """Whether a sale at `at` earns by the campaign's rules: [starts_at, ends_at)."""
        return (self.starts_at is None or self.starts_at <= at) and (
            self.ends_at is None or at < self.ends_at
        )


def has_rules(arms: Iterable[Mapping[str, Any]]) -> bool:
    return any(a.get("action", {}).get("kind") == "rules" for a in arms)


def _unique(rules: list[Any], taken: set[str], campaign_id: int) -> tuple[Any, ...]:
    """An arm's rules with ids the rule set does not use (a rule set published after the
    campaign was saved may have taken one): the clashing id gets the campaign's id appended."""
    out = []
    for rule in rules:
        rule_id = rule.id
        if rule_id in taken:
            rule_id = f"{rule.id[:50]}-c{campaign_id}"
            rule = rule.model_copy(update={"id": rule_id})
        taken.add(rule_id)
        out.append(rule)
    return tuple(out)


def load(session: Session, program_id: int, doc: RuleSetDoc) -> tuple[RuleCampaign, ...]:
    """The program's running campaigns with a rules arm (one query)."""
    found: list[RuleCampaign] = []
    taken = {r.id for r in doc.rules}
    rows = session.scalars(
        select(Campaign)
        .where(Campaign.program_id == program_id, Campaign.status == "running")
        .order_by(Campaign.id)
    )
    for row in rows:
        if not has_rules(row.arms):
            continue
        arms: dict[str, RuleArm] = {}
        for v in row.arms:
            action = v.get("action", {})
            if action.get("kind") != "rules" or not action.get("rules"):
                continue
            parsed = _RULES.validate_python(action["rules"])
            arms[v["key"]] = RuleArm(
                campaign_id=row.id, campaign=row.code, campaign_name=row.name, arm=v["key"],
                arm_name=v.get("name") or v["key"], rules=_unique(parsed, taken, row.id),
            )  # fmt: skip
        campaign = RuleCampaign(
            id=row.id, code=row.code, starts_at=row.starts_at, ends_at=row.ends_at, arms=arms
        )
        found.append(campaign)
    return tuple(found)


def with_every_arm(doc: RuleSetDoc, campaigns: tuple[RuleCampaign, ...]) -> RuleSetDoc:
    """The rule set with every running arm's rules: what the earn path must read figures for
    (caps, purchase counts, segments the arms' rules name)."""
    extra = [r for c in campaigns for a in c.arms.values() for r in a.rules]
    return doc.model_copy(update={"rules": [*doc.rules, *extra]}) if extra else doc


def member_arms(
    session: Session, campaigns: tuple[RuleCampaign, ...], member_ids: Iterable[int]
) -> dict[int, tuple[tuple[int, str], ...]]:
    """member id → (campaign id, arm) of the running rule campaigns the member is in: one
    query for all the members of a planning round."""
    ids = sorted(set(member_ids))
    if not campaigns or not ids:
        return {}
    rows = session.execute(
        select(CampaignMember.member_id, CampaignMember.campaign_id, CampaignMember.arm).where(
            CampaignMember.campaign_id.in_([c.id for c in campaigns]),
            CampaignMember.member_id.in_(ids),
        )
    )
    out: dict[int, list[tuple[int, str]]] = {}
    for member_id, campaign_id, arm in rows:
        out.setdefault(member_id, []).append((campaign_id, arm))
    return {m: tuple(sorted(v)) for m, v in out.items()}


def arms_at(
    campaigns: tuple[RuleCampaign, ...], memberships: tuple[tuple[int, str], ...], at: datetime
) -> list[RuleArm]:
    """The rule arms that apply to a sale at `at` of a member in `memberships`."""
    by_id = {c.id: c for c in campaigns}
    out: list[RuleArm] = []
    for campaign_id, arm in memberships:
        campaign = by_id.get(campaign_id)
        if campaign is None or not campaign.runs_at(at):
            continue
        found = campaign.arms.get(arm)
        if found is not None:
            out.append(found)
    return out


def merged(doc: RuleSetDoc, arms: list[RuleArm]) -> RuleSetDoc:
    """The program's rule set plus the arms' rules, after its own (pure; no validation: the
    rules were validated against the rule set when the campaign was saved)."""
    return doc.model_copy(update={"rules": [*doc.rules, *(r for a in arms for r in a.rules)]})


def annotate(steps: list[dict[str, Any]], arms: list[RuleArm]) -> None:
    """Name the campaign and variant on each step of an arm's rule."""
    owner = {r.id: a for a in arms for r in a.rules}
    for step in steps:
        arm = owner.get(str(step.get("rule")))
        if arm is not None:
            step["campaign"] = arm.campaign
            step["campaign_name"] = arm.campaign_name
            step["variant"] = arm.arm
            step["variant_name"] = arm.arm_name


def count_rule_points(session: Session, points: list[tuple[int, int, int]]) -> None:
    """Add what a sale's arms added to each member's campaign row (her own row: no row that
    every sale updates)."""
    for campaign_id, member_id, added in points:
        if added:
            session.execute(
                update(CampaignMember)
                .where(
                    CampaignMember.campaign_id == campaign_id,
                    CampaignMember.member_id == member_id,
                )
                .values(rule_points=CampaignMember.rule_points + added)
                .execution_options(synchronize_session=False)
            )
