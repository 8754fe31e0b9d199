"""Staff roles and what each may do. Views ask for a permission, never for a role by name, so a
new page only picks the permission that fits (or adds one here)."""

from __future__ import annotations

ROLES = ("owner", "marketer", "support", "viewer")

# permission -> the roles that hold it
PERMISSIONS: dict[str, frozenset[str]] = {
    # Member 360°
    "members.view": frozenset({"owner", "marketer", "support", "viewer"}),
    "members.edit": frozenset({"owner", "support"}),  # profile, block and unblock
    "members.export": frozenset({"owner", "marketer", "support", "viewer"}),
    "points.adjust": frozenset({"owner", "support"}),
    "tiers.assign": frozenset({"owner", "support"}),  # a manual tier change (an appeal)
    # Program setup and reports (pages by the program-setup and report work)
    "program.view": frozenset({"owner", "marketer", "viewer"}),
    "program.manage": frozenset({"owner", "marketer"}),  # settings, stores, channels
    "rules.view": frozenset({"owner", "marketer", "viewer"}),
    "rules.manage": frozenset({"owner", "marketer"}),
    "tiers.view": frozenset({"owner", "marketer", "viewer"}),
    "tiers.manage": frozenset({"owner", "marketer"}),
    "reports.view": frozenset({"owner", "marketer", "viewer"}),
    # Messages to members: templates, notification settings, the deliveries log and replay
    "messages.view": frozenset({"owner", "marketer", "support", "viewer"}),
    "messages.manage": frozenset({"owner", "marketer"}),
    "deliveries.replay": frozenset({"owner", "marketer", "support"}),
    # Rewards: the catalog (prices, stock) and the coupons members hold. Support looks coupons
    # up and cancels or reissues them for a member, always with a reason.
    "rewards.view": frozenset({"owner", "marketer", "viewer"}),
    "rewards.manage": frozenset({"owner", "marketer"}),
    "coupons.view": frozenset({"owner", "marketer", "support", "viewer"}),
    "coupons.manage": frozenset({"owner", "support"}),
    # Webhooks: endpoints hold signing secrets
    "webhooks.view": frozenset({"owner", "marketer"}),
    "webhooks.manage": frozenset({"owner"}),
    # Members' data rights (patron.privacy): support answers requests and exports a member's
    # data for her; only owners erase (irreversible) or place and release legal holds.
    "privacy.view": frozenset({"owner", "support"}),
    "privacy.export": frozenset({"owner", "support"}),
    "privacy.erase": frozenset({"owner"}),
    "privacy.hold": frozenset({"owner"}),
    # Owners only
    "staff.manage": frozenset({"owner"}),
    "apikeys.manage": frozenset({"owner"}),
    "audit.view": frozenset({"owner"}),
}


def can(role: str, permission: str) -> bool:
    """Whether `role` holds `permission`; an unknown permission is a programming error."""
    try:
        return role in PERMISSIONS[permission]
    except KeyError:
        raise ValueError(f"unknown permission {permission!r}") from None


def permissions_of(role: str) -> frozenset[str]:
    return frozenset(p for p, roles in PERMISSIONS.items() if role in roles)
