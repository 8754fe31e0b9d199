"""The event types Patron writes to its outbox, what each means, and which ledger entry kind
each points event reports."""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "member.enrolled": "A member joined a program.",
    "points.earned": "Points were credited: a purchase or an event (sign-up, birthday, …).",
    "points.redeemed": "Points were spent: on a purchase or a reward.",
    "points.refunded": "A refund took earned points back or gave spent points back.",
    "points.adjusted": "Staff or an integration added or removed points, with a reason.",
    "points.expired": "A lot's unspent points expired.",
    "points.expiring": "A member's points will expire soon (the reminder job).",
    "points.statement": "A member's monthly balance statement (the statement job).",
    "tier.changed": "A member moved to another tier.",
    "member.birthday": "It is the member's birthday in the program's timezone (the birthday job).",
    "reward.redeemed": "A member spent points on a reward (coupons issued, or external fulfilment).",
    "coupon.issued": "A coupon was given to a member without points (a campaign).",
    "coupon.used": "A coupon was used at a till or online, on an order.",
    "coupon.cancelled": "An unused coupon was cancelled; its points went back to the member.",
    "coupon.expired": "An unused coupon expired (points back if the reward says so).",
    "member.merged": "Staff merged a duplicate member into a surviving one (patron.moves.merge).",
    "points.merged": "Points moved from a merged member to the surviving one (one event per entry).",
    "points.transferred": "A member gave points to another member of the program (one event per entry).",
    "member.erasure_requested": "A member asked for her data to be erased (on her member page); "
    "the privacy operations carry it out.",
    "member.erased": "A member's personal data was erased (the ledger keeps every amount); the "
    "payload names the erasure, never the person.",
    "campaign.launched": "A campaign started: its members were put in arms and given their "
    "actions (counts in the payload; the points and coupons have their own events).",
    "campaign.ended": "A campaign ended: stopped by staff or past its end (reason in the payload).",
    "campaign.offer": "A campaign's message to one member of an arm with a message (at launch, or "
    "as a live campaign adds her): the campaign, variant and its offer (points, coupon, earning "
    "rules or none).",
    "milestone.achieved": "A member reached a milestone (a goal such as 10 visits in a month); "
    "its points and coupon, if any, come with their own events.",
    "survey.answered": "A member answered a survey (the answers; points for it come as "
    "points.adjusted).",
    "fraud.review": "A sale's points were held for review by the fraud controls (status open), "
    "or staff decided the review (confirmed: released; reversed: taken back).",
}

# Entry kind -> the event that reports it.
ENTRY_EVENTS: dict[str, str] = {
    "earn": "points.earned",
    "redeem": "points.redeemed",
    "reverse": "points.refunded",
    "adjust": "points.adjusted",
    "expire": "points.expired",
    "merge_out": "points.merged",
    "merge_in": "points.merged",
    "transfer_out": "points.transferred",
    "transfer_in": "points.transferred",
}


def is_event_type(kind: str) -> bool:
    return kind in EVENT_TYPES


def public_id(event_id: int) -> str:
    """The id integrators see (webhook-id, de-duplication key)."""
    return f"evt_{event_id}"


def parse_public_id(value: str) -> int | None:
    digits = value.removeprefix("evt_")
    return int(digits) if digits.isdigit() and len(digits) < 19 else None
