"""Which coupons go together on one order, and the best combination (pure, no I/O).

The model (docs/rewards.md has examples):
- an **exclusive** coupon is used alone;
- coupons of the same **stack group** exclude each other: at most one per group per order
  (e.g. group `basket` for "5,000 off" and "10% off");
- at most **max_per_order** coupons of one reward per order;
- a reward that does not **combine with points** cannot be used on an order paid partly with
  points;
- each discount is computed on the basket before any coupon, and together they never take more
  than the basket costs (the last ones are cut).

`best` tries every subset of the presented coupons (at most MAX_COUPONS, so at most 2^10
subsets) and keeps the one that takes most off the bill, then the one that uses most coupons
(products handed over count), then the one that keeps the earliest-presented coupons: the same
basket always gets the same answer. Every coupon left out is given a reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

MAX_COUPONS = 10


@dataclass(frozen=True)
class Candidate:
    """One presented coupon, already checked alone against the basket."""

    code: str
    reward: str
    discount_minor: int = 0  # what it takes off the basket alone
    exclusive: bool = False
    stack_group: str | None = None
    max_per_order: int = 1
    combine_with_points: bool = True
    # Why it cannot be used at all (expired, wrong store, …): never chosen.
    refusal: tuple[str, str] | None = None


@dataclass
class Choice:
    code: str
    discount_minor: int = 0
    applied: bool = False
    reason: str | None = None
    detail: str | None = None


@dataclass
class Selection:
    choices: list[Choice] = field(default_factory=list)

    @property
    def applied(self) -> list[Choice]:
        return [c for c in self.choices if c.applied]

    @property
    def discount_minor(self) -> int:
        return sum(c.discount_minor for c in self.applied)


def conflict(group: Sequence[Candidate], paying_with_points: bool) -> tuple[str, str] | None:
    """Why these coupons cannot all go on one order, or None."""
    if len(group) > 1:
        for c in group:
            if c.exclusive:
                return "coupon_not_combinable", f"{c.code} ({c.reward}) is used alone"
    seen: dict[str, str] = {}
    for c in group:
        if c.stack_group is not None:
            if c.stack_group in seen:
                return (
                    "coupon_not_combinable",
                    f"{c.code} and {seen[c.stack_group]} are both in group {c.stack_group}",
                )
            seen[c.stack_group] = c.code
    per_reward = Counter(c.reward for c in group)
    for c in group:
        if per_reward[c.reward] > c.max_per_order:
            return (
                "coupon_not_combinable",
                f"at most {c.max_per_order} coupon(s) of {c.reward} per order",
            )
    if paying_with_points:
        for c in group:
            if not c.combine_with_points:
                return "coupon_not_combinable", f"{c.code} cannot be used with points payment"
    return None


def _cut(group: Sequence[Candidate], amount_minor: int) -> list[int]:
    """Each coupon's discount, cut so that together they do not exceed the basket."""
    left = amount_minor
    out = []
    for c in group:
        part = min(c.discount_minor, left)
        out.append(part)
        left -= part
    return out


def best(candidates: Sequence[Candidate], amount_minor: int, *, points: bool) -> Selection:
    usable = [c for c in candidates if c.refusal is None]
    chosen: tuple[Candidate, ...] = ()
    best_key: tuple[int, int, tuple[int, ...]] | None = None
    order = {id(c): i for i, c in enumerate(candidates)}
    for size in range(len(usable), 0, -1):
        for group in combinations(usable, size):
            if conflict(group, points) is not None:
                continue
            total = sum(_cut(group, amount_minor))
            key = (total, size, tuple(-order[id(c)] for c in group))
            if best_key is None or key > best_key:
                best_key, chosen = key, group
    parts = dict(zip((id(c) for c in chosen), _cut(chosen, amount_minor), strict=True))
    selection = Selection()
    for c in candidates:
        if id(c) in parts:
            selection.choices.append(Choice(c.code, parts[id(c)], applied=True))
        elif c.refusal is not None:
            selection.choices.append(Choice(c.code, reason=c.refusal[0], detail=c.refusal[1]))
        else:
            # Left out only for a conflict with the chosen ones (a coupon that conflicts with
            # none would have been added: it never lowers the total).
            why = conflict([*chosen, c], points) or (
                "coupon_not_combinable",
                "the other coupons take more off this basket",
            )
            selection.choices.append(Choice(c.code, reason=why[0], detail=why[1]))
    return selection


def check_together(
    candidates: Sequence[Candidate], amount_minor: int, *, points: bool
) -> Selection:
    """For a sale: the till says which coupons to use; all must be usable and go together.
    The answer applies them all, or names the first that cannot be used."""
    selection = Selection()
    refused = next((c for c in candidates if c.refusal is not None), None)
    why = refused.refusal if refused is not None else conflict(candidates, points)
    if why is not None:
        code = refused.code if refused is not None else candidates[-1].code
        selection.choices.append(Choice(code, reason=why[0], detail=why[1]))
        return selection
    for c, part in zip(candidates, _cut(candidates, amount_minor), strict=True):
        selection.choices.append(Choice(c.code, part, applied=True))
    return selection
