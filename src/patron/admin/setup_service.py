"""What the program-setup and staff pages need beyond the programs and staff services: editing a
store, switching stores and staff accounts off and on, changing a user's role with the last-owner
rule, and ending a user's sessions on the record.

Each function flushes and never commits (the view owns the unit of work) and writes its audit
record in the same transaction, naming the signed-in user as the actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.admin import service as staff_service
from patron.admin.models import StaffSession, StaffUser
from patron.admin.roles import ROLES
from patron.audit import service as audit
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.auth.models import ApiKey
from patron.errors import Conflict, Invalid
from patron.programs.models import Program, Store


class LastOwner(Conflict):
    """The change would leave nobody able to manage staff and API keys."""

    code = "last_owner"


# --- stores -----------------------------------------------------------------------------------


def _store_subject(program: Program, store: Store) -> str:
    return f"{program.code}/{store.code}"


def rename_store(
    session: Session, program: Program, store: Store, *, name: str, actor: Actor, now: datetime
) -> bool:
    """A new display name (the code stays: tills and rules refer to it). False if unchanged."""
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("name: give 1 to 200 characters", code="invalid_name")
    if name == store.name:
        return False
    audit.record(
        session,
        actor=actor,
        action="store.updated",
        subject_type="store",
        subject_id=_store_subject(program, store),
        program_id=program.id,
        at=now,
        before={"name": store.name},
        after={"name": name},
    )
    store.name = name
    session.flush()
    return True


def set_store_active(
    session: Session, program: Program, store: Store, *, active: bool, actor: Actor, now: datetime
) -> bool:
    """Switch a store off (kept, with its history) or on again. False if it already was."""
    if store.active == active:
        return False
    store.active = active
    audit.record(
        session,
        actor=actor,
        action="store.reactivated" if active else "store.deactivated",
        subject_type="store",
        subject_id=_store_subject(program, store),
        program_id=program.id,
        at=now,
        before={"active": not active},
        after={"active": active},
    )
    session.flush()
    return True


# --- staff ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffRow:
    """A staff user as the list shows them, copied out of the session."""

    id: int
    email: str
    name: str
    role: str
    language: str
    active: bool
    locked_until: datetime | None
    last_sign_in_at: datetime | None
    created_at: datetime
    live_sessions: int

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def _live_sessions(session: Session, now: datetime) -> dict[int, int]:
    rows = session.execute(
        select(StaffSession.user_id, func.count())
        .where(StaffSession.revoked_at.is_(None), StaffSession.expires_at > now)
        .group_by(StaffSession.user_id)
    )
    return {user_id: count for user_id, count in rows}


def _row(user: StaffUser, sessions: dict[int, int]) -> StaffRow:
    return StaffRow(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        language=user.language,
        active=user.active,
        locked_until=user.locked_until,
        last_sign_in_at=user.last_sign_in_at,
        created_at=user.created_at,
        live_sessions=sessions.get(user.id, 0),
    )


def staff_rows(session: Session, *, now: datetime) -> list[StaffRow]:
    sessions = _live_sessions(session, now)
    return [_row(u, sessions) for u in staff_service.list_users(session)]


def staff_row(session: Session, user_id: int, *, now: datetime) -> StaffRow:
    return _row(staff_service.get_user(session, user_id), _live_sessions(session, now))


def _other_active_owners(session: Session, user: StaffUser) -> int:
    """Active owners besides `user`, with their rows locked: two owners demoting each other at
    the same moment must not both succeed (SQLite serializes writers anyway)."""
    ids = session.scalars(
        select(StaffUser.id)
        .where(StaffUser.role == "owner", StaffUser.active.is_(True), StaffUser.id != user.id)
        .with_for_update()
    ).all()
    return len(ids)


def _keep_an_owner(session: Session, user: StaffUser) -> None:
    if user.role == "owner" and user.active and _other_active_owners(session, user) == 0:
        raise LastOwner(f"{user.email} is the last active owner: make someone else an owner first")


def update_user(
    session: Session,
    user: StaffUser,
    *,
    name: str,
    role: str,
    language: str,
    actor: Actor,
    now: datetime,
) -> bool:
    """Name, role and language of a staff user. A role change takes effect on their next
    request (permissions are read from the user's row each time). False if nothing changed."""
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("name: give 1 to 200 characters", code="invalid_name")
    if role not in ROLES:
        raise Invalid(f"role: must be one of {', '.join(ROLES)}", code="invalid_role")
    if language not in staff_service.LANGUAGES:
        raise Invalid("language: must be one of en, ko, zh", code="invalid_language")
    if role != user.role:
        _keep_an_owner(session, user)
    before = {"name": user.name, "role": user.role, "language": user.language}
    after = {"name": name, "role": role, "language": language}
    if before == after:
        return False
    old, new = audit.changes(before, after)
    user.name, user.role, user.language = name, role, language
    user.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="staff.role_changed" if "role" in new else "staff.updated",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        before=old,
        after=new,
    )
    session.flush()
    return True


def set_user_active(
    session: Session, user: StaffUser, *, active: bool, actor: Actor, now: datetime
) -> bool:
    """Switch an account off (it cannot sign in; its sessions end at once) or on again."""
    if user.active == active:
        return False
    if not active:
        _keep_an_owner(session, user)
    user.active = active
    user.updated_at = now
    ended = 0 if active else staff_service.revoke_sessions(session, user, now=now)
    audit.record(
        session,
        actor=actor,
        action="staff.reactivated" if active else "staff.deactivated",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        before={"active": not active},
        after={"active": active, **({} if active else {"sessions_ended": ended})},
    )
    session.flush()
    return True


def end_sessions(
    session: Session, user: StaffUser, *, actor: Actor, now: datetime, keep: int | None = None
) -> int:
    """Sign a user out everywhere (but `keep`, the owner's own session when it is theirs)."""
    ended = staff_service.revoke_sessions(session, user, now=now, keep=keep)
    audit.record(
        session,
        actor=actor,
        action="staff.sessions_revoked",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        after={"sessions_ended": ended},
    )
    session.flush()
    return ended


def recent_changes(
    session: Session, *, subject_type: str, subject_id: object, action: str = "", limit: int = 20
) -> list[AuditRecord]:
    """The newest audit records about one subject, optionally only actions starting `action`."""
    stmt = select(AuditRecord).where(
        AuditRecord.subject_type == subject_type, AuditRecord.subject_id == str(subject_id)
    )
    if action:
        stmt = stmt.where(AuditRecord.action.startswith(action, autoescape=True))
    return list(session.scalars(stmt.order_by(AuditRecord.id.desc()).limit(limit)))


def key_creators(session: Session, keys: list[ApiKey]) -> dict[int, str]:
    """key id -> the actor that created it, from the audit log (keys do not store it)."""
    if not keys:
        return {}
    rows = session.execute(
        select(AuditRecord.subject_id, AuditRecord.actor).where(
            AuditRecord.action == "apikey.created",
            AuditRecord.subject_type == "api_key",
            AuditRecord.subject_id.in_([str(k.id) for k in keys]),
        )
    )
    return {
        int(subject): actor for subject, actor in rows if subject.isascii() and subject.isdigit()
    }
