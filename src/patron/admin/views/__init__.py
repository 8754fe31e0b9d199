"""The admin pages, one router per area. A new area adds its module's router here."""

from __future__ import annotations

from fastapi import APIRouter

from patron.admin.views import (
    audit,
    auth,
    campaigns,
    deliveries,
    enroll,
    fraud,
    home,
    jobs,
    member_moves,
    members,
    messages,
    milestones,
    privacy,
    program,
    reports,
    rewards,
    rules,
    segments,
    staff,
    surveys,
    tiers,
    webhooks,
)

ROUTERS: list[APIRouter] = [
    auth.router,
    home.router,
    enroll.router,  # before members: /members/new is not a member id
    members.router,
    audit.router,
    program.router,
    rules.router,
    staff.router,
    tiers.router,
    rewards.router,
    reports.router,
    messages.router,
    webhooks.router,
    deliveries.router,
    fraud.router,
    jobs.router,
    privacy.router,
    member_moves.router,
    segments.router,
    surveys.router,
    campaigns.router,
    milestones.router,
]
