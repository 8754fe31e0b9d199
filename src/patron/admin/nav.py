"""The sections in the top navigation.

An item shows when the admin app has a route with its `endpoint` name and the user holds its
`permission`; so a new section's page appears in the nav as soon as its view exists, and never
for a role that would get a 403. Add an item here only for a new top-level section.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.routing import NoMatchFound

from patron.admin.deps import Staff


@dataclass(frozen=True)
class NavItem:
    section: str  # the `section` a page passes to render(), to mark the item as current
    label: str  # message key
    endpoint: str  # the route name of the section's first page
    permission: str


NAV: tuple[NavItem, ...] = (
    NavItem("members", "nav.members", "members_search", "members.view"),
    NavItem("program", "nav.program", "program_settings", "program.view"),
    NavItem("rules", "nav.rules", "rules_list", "rules.view"),
    NavItem("tiers", "nav.tiers", "tiers_setup", "tiers.view"),
    NavItem("rewards", "nav.rewards", "rewards_list", "rewards.view"),
    NavItem("reports", "nav.reports", "reports_home", "reports.view"),
    NavItem("messages", "nav.messages", "messages_home", "messages.view"),
    NavItem("webhooks", "nav.webhooks", "webhooks_list", "webhooks.view"),
    NavItem("jobs", "nav.jobs", "jobs_list", "members.view"),
    NavItem("privacy", "nav.privacy", "privacy_home", "privacy.view"),
    NavItem("staff", "nav.staff", "staff_list", "staff.manage"),
    NavItem("audit", "nav.audit", "audit_log", "audit.view"),
    NavItem("fraud", "nav.fraud", "fraud_queue", "members.view"),
    NavItem("surveys", "nav.surveys", "surveys_list", "program.view"),
    NavItem("engagement", "nav.engagement", "segments_list", "rules.view"),
    NavItem("campaigns", "nav.campaigns", "campaigns_list", "rules.view"),
    NavItem("milestones", "nav.milestones", "milestones_list", "rules.view"),
)


@dataclass(frozen=True)
class NavLink:
    section: str
    label: str
    href: str


def _path(request: Request, endpoint: str) -> str | None:
    """The path of a parameterless admin route, or None while no such page exists."""
    try:
        return request.scope.get("root_path", "") + str(request.app.url_path_for(endpoint))
    except NoMatchFound:
        return None


def nav_links(request: Request, staff: Staff | None) -> list[NavLink]:
    if staff is None:
        return []
    links = []
    for item in NAV:
        if staff.can(item.permission) and (href := _path(request, item.endpoint)) is not None:
            links.append(NavLink(item.section, item.label, href))
    return links
