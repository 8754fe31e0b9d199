"""Staff users: accounts, argon2 passwords, sign-in with lock-out, and server-side sessions.

Services flush and never commit; the edge (a view or a CLI command) owns the transaction. Sign-in
does not raise on a wrong password: the failure counter and its audit record must be committed
even though the caller is refused, so `authenticate` returns a `SignIn` the edge acts on.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from patron.admin.models import StaffSession, StaffUser
from patron.admin.roles import ROLES
from patron.admin.settings import get_admin_settings
from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Forbidden, Invalid, NotFound
from patron.programs.models import Program

LANGUAGES = ("en", "ko", "zh")
PASSWORD_MIN = 10
# argon2 takes any length, but hashing a megabyte per sign-in attempt is a cheap denial of service.
PASSWORD_MAX = 200
ANONYMOUS = Actor("anonymous")

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: t=3, m=64 MiB, p=4).
# Tests swap in a cheaper hasher of the same kind; `rehash_if_needed` upgrades old hashes.
hasher = PasswordHasher()


class WrongPassword(Invalid):
    code = "wrong_password"


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: a user, or why not."""

    user: StaffUser | None
    failure: str | None = None  # invalid | locked | inactive
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.user is not None and self.failure is None


def actor_for(user: StaffUser) -> Actor:
    """How a staff user appears in the audit log, tier history and ledger entries: user:<id>."""
    return Actor("user", str(user.id))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy: list[str] = []


def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so a wrong address takes as long as a wrong
    password (made on first use, with the hasher in force then)."""
    if not _dummy:
        _dummy.append(hasher.hash(secrets.token_urlsafe(16)))
    return _dummy[0]


def generate_password() -> str:
    """16 URL-safe characters (96 bits), for the demo and `patron user create` without --password."""
    return secrets.token_urlsafe(12)


def normalise_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Invalid(f"email: {exc}", code="invalid_email") from None


def check_password(password: str, *, email: str | None = None) -> None:
    """The password rule: 10 to 200 characters, not the e-mail address, not one repeated character."""
    if len(password) < PASSWORD_MIN:
        raise Invalid(
            f"password: use at least {PASSWORD_MIN} characters", code="password_too_short"
        )
    if len(password) > PASSWORD_MAX:
        raise Invalid(f"password: use at most {PASSWORD_MAX} characters", code="password_too_long")
    if (email and password.strip().lower() == email.lower()) or len(set(password)) < 3:
        raise Invalid("password: too easy to guess", code="password_too_weak")


def _check_fields(*, name: str, role: str, language: str) -> None:
    if not name.strip() or len(name.strip()) > 200:
        raise Invalid("name: give 1 to 200 characters", code="invalid_name")
    if role not in ROLES:
        raise Invalid(f"role: must be one of {', '.join(ROLES)}", code="invalid_role")
    if language not in LANGUAGES:
        raise Invalid(f"language: must be one of {', '.join(LANGUAGES)}", code="invalid_language")


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    language: str = "en",
    actor: Actor,
    now: datetime,
    programs: list[str] | None = None,
    granter: frozenset[str] | None = None,
) -> StaffUser:
    """`programs` limits the user to those programs (codes); None: every program. `granter` is
    the reach of whoever creates the user (None: unrestricted), who cannot give more."""
    address = normalise_email(email)
    _check_fields(name=name, role=role, language=language)
    reach = check_reach(session, programs)
    check_grant(granter, reach)
    check_password(password, email=address)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == address)) is not None:
        raise Conflict(f"email: {address} already has an account", code="duplicate_email")
    user = StaffUser(
        email=address,
        name=name.strip(),
        role=role,
        language=language,
        programs=reach,
        password_hash=hash_password(password),
        active=True,
        failed_sign_ins=0,
        password_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="staff.created",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        after={
            "email": address,
            "name": user.name,
            "role": role,
            "language": language,
            "programs": reach,
        },
    )
    return user


# --- reach: the programs a staff user may see ---------------------------------------------------


def check_reach(session: Session, programs: list[str] | None) -> list[str] | None:
    """The programs a user is limited to, sorted, each checked to exist (a user limited to a
    misspelt program would see nothing, silently); None stays None (every program)."""
    if programs is None:
        return None
    wanted = sorted({code.strip() for code in programs if code.strip()})
    if not wanted:
        raise Invalid(
            "programs: name at least one program (or none at all for every program)",
            code="invalid_staff_reach",
        )
    found = set(session.scalars(select(Program.code).where(Program.code.in_(wanted))))
    missing = [code for code in wanted if code not in found]
    if missing:
        raise NotFound(f"no program {', '.join(missing)}", code="program_not_found")
    return wanted


def within(granter: frozenset[str] | None, reach: list[str] | frozenset[str] | None) -> bool:
    """Whether `reach` (None: every program) lies inside `granter`'s (None: every program)."""
    if granter is None:
        return True
    return reach is not None and set(reach) <= granter


def check_grant(granter: frozenset[str] | None, reach: list[str] | None) -> None:
    """A user limited to programs gives no one (themselves included) more than they hold:
    never every program, never a program of theirs they do not hold."""
    if not within(granter, reach):
        assert granter is not None
        raise Forbidden(
            f"you act in {', '.join(sorted(granter))} only: you cannot give "
            + ("every program" if reach is None else ", ".join(sorted(set(reach) - granter))),
            code="reach_not_allowed",
        )


def set_programs(
    session: Session,
    user: StaffUser,
    programs: list[str] | None,
    *,
    actor: Actor,
    granter: frozenset[str] | None,
    now: datetime,
) -> bool:
    """Limit a user to `programs` (None: every program). Only a user without limits changes
    anyone's reach; it takes effect on the user's next request (read from their row each time).
    The last active unrestricted owner cannot limit themselves: someone must keep the whole
    deployment in hand. False if nothing changed."""
    if granter is not None:
        raise Forbidden(
            "only a user who reaches every program changes what staff may reach",
            code="reach_not_allowed",
        )
    reach = check_reach(session, programs)
    if reach == user.programs:
        return False
    if user.programs is None and user.role == "owner" and user.active:
        # Filtered here, not in SQL: a JSON null and an SQL NULL both mean every program.
        owners = session.scalars(
            select(StaffUser)
            .where(StaffUser.role == "owner", StaffUser.active.is_(True), StaffUser.id != user.id)
            .with_for_update()
        ).all()
        if not any(other.programs is None for other in owners):
            raise Conflict(
                f"{user.email} is the last owner who reaches every program: "
                "give another owner every program first",
                code="last_unrestricted_owner",
            )
    before = user.programs
    user.programs = reach
    user.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="staff.reach_changed",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        before={"programs": before},
        after={"programs": reach},
    )
    session.flush()
    return True


def manages(granter: frozenset[str] | None, user: StaffUser) -> bool:
    """Whether a staff manager with reach `granter` may see and change `user`: one limited to
    programs manages only users limited to programs of theirs."""
    return within(granter, user.programs)


def get_user(session: Session, user_id: int) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"no staff user {user_id}", code="staff_user_not_found")
    return user


def find_user(session: Session, email: str) -> StaffUser:
    user = session.scalars(
        select(StaffUser).where(StaffUser.email == email.strip().lower())
    ).one_or_none()
    if user is None:
        raise NotFound(f"no staff user with e-mail {email.strip()}", code="staff_user_not_found")
    return user


def list_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.id)))


def _refuse(session: Session, *, user: StaffUser | None, email: str, why: str, now: datetime):
    audit.record(
        session,
        actor=ANONYMOUS,
        action="staff.sign_in_failed",
        subject_type="staff_user",
        subject_id=user.id if user else "-",
        at=now,
        after={"email": email[:254], "why": why},
    )


def authenticate(session: Session, *, email: str, password: str, now: datetime) -> SignIn:
    """Check an e-mail and password, counting failures: `lockout_failures` in a row lock the
    account for `lockout_minutes` (measured with `now`, so tests move a frozen clock)."""
    settings = get_admin_settings()
    address = email.strip().lower()[:254]
    # The row lock makes two simultaneous wrong guesses count twice (SQLite serializes writers).
    user = session.scalars(
        select(StaffUser).where(StaffUser.email == address).with_for_update()
    ).one_or_none()
    if user is None:
        verify_password(_dummy_hash(), password[:PASSWORD_MAX])
        _refuse(session, user=None, email=address, why="unknown_email", now=now)
        return SignIn(None, "invalid")
    if user.locked_until is not None and user.locked_until > now:
        _refuse(session, user=user, email=address, why="locked", now=now)
        return SignIn(None, "locked", user.locked_until)
    if len(password) > PASSWORD_MAX or not verify_password(user.password_hash, password):
        user.failed_sign_ins += 1
        _refuse(session, user=user, email=address, why="wrong_password", now=now)
        if user.failed_sign_ins >= settings.lockout_failures:
            user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            user.failed_sign_ins = 0
            audit.record(
                session,
                actor=ANONYMOUS,
                action="staff.locked",
                subject_type="staff_user",
                subject_id=user.id,
                at=now,
                after={"until": user.locked_until.isoformat()},
            )
            session.flush()
            return SignIn(None, "locked", user.locked_until)
        session.flush()
        return SignIn(None, "invalid")
    if not user.active:
        _refuse(session, user=user, email=address, why="inactive", now=now)
        return SignIn(None, "inactive")
    user.failed_sign_ins = 0
    user.locked_until = None
    user.last_sign_in_at = now
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.record(
        session,
        actor=actor_for(user),
        action="staff.signed_in",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
    )
    session.flush()
    return SignIn(user)


def start_session(
    session: Session, user: StaffUser, *, now: datetime, user_agent: str | None = None
) -> tuple[StaffSession, str]:
    """A new session; returns the row and the cookie token (only its hash is stored)."""
    # This user's ended sessions are no longer needed: the audit log keeps the sign-ins.
    session.execute(
        delete(StaffSession).where(
            StaffSession.user_id == user.id,
            or_(StaffSession.expires_at <= now, StaffSession.revoked_at.is_not(None)),
        )
    )
    token = secrets.token_urlsafe(32)
    row = StaffSession(
        user_id=user.id,
        token_hash=_digest(token),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(hours=get_admin_settings().session_hours),
        user_agent=(user_agent or "")[:200] or None,
    )
    session.add(row)
    session.flush()
    return row, token


def resolve_session(
    session: Session, token: str | None, *, now: datetime
) -> tuple[StaffSession, StaffUser] | None:
    """The live session and its user for a cookie token, or None (unknown, ended, expired,
    or the user was deactivated)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(StaffSession, StaffUser)
        .join(StaffUser, StaffUser.id == StaffSession.user_id)
        .where(StaffSession.token_hash == _digest(token))
    ).one_or_none()
    if row is None:
        return None
    staff_session, user = row
    if staff_session.revoked_at is not None or staff_session.expires_at <= now or not user.active:
        return None
    return staff_session, user


def end_session(session: Session, session_id: int, *, user: StaffUser, now: datetime) -> None:
    """Sign-out: the row is revoked, so the cookie is worthless even if kept."""
    session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    audit.record(
        session,
        actor=actor_for(user),
        action="staff.signed_out",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
    )


def revoke_sessions(
    session: Session, user: StaffUser, *, now: datetime, keep: int | None = None
) -> int:
    stmt = update(StaffSession).where(
        StaffSession.user_id == user.id, StaffSession.revoked_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(StaffSession.id != keep)
    result = session.execute(stmt.values(revoked_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def change_password(
    session: Session,
    user: StaffUser,
    *,
    current: str,
    new: str,
    now: datetime,
    keep_session: int | None = None,
) -> int:
    """The user changes their own password; every other session of theirs ends.
    Returns how many sessions were ended."""
    if len(current) > PASSWORD_MAX or not verify_password(user.password_hash, current):
        raise WrongPassword("current_password: the current password is not right")
    check_password(new, email=user.email)
    if verify_password(user.password_hash, new):
        raise Invalid("password: choose a password you have not been using", code="password_reused")
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    user.updated_at = now
    ended = revoke_sessions(session, user, now=now, keep=keep_session)
    audit.record(
        session,
        actor=actor_for(user),
        action="staff.password_changed",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        after={"sessions_ended": ended},
    )
    session.flush()
    return ended


def set_password(
    session: Session, user: StaffUser, *, password: str, actor: Actor, now: datetime
) -> None:
    """An owner or the CLI sets a new password: all the user's sessions end, any lock is lifted."""
    check_password(password, email=user.email)
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.updated_at = now
    user.failed_sign_ins = 0
    user.locked_until = None
    ended = revoke_sessions(session, user, now=now)
    audit.record(
        session,
        actor=actor,
        action="staff.password_set",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        after={"sessions_ended": ended},
    )
    session.flush()


def unlock(session: Session, user: StaffUser, *, actor: Actor, now: datetime) -> bool:
    """Lift a lock-out before its time; False when the user was not locked."""
    was_locked = user.locked_until is not None and user.locked_until > now
    user.failed_sign_ins = 0
    user.locked_until = None
    if was_locked:
        audit.record(
            session,
            actor=actor,
            action="staff.unlocked",
            subject_type="staff_user",
            subject_id=user.id,
            at=now,
        )
    session.flush()
    return was_locked


def set_language(session: Session, user: StaffUser, language: str, *, now: datetime) -> None:
    if language not in LANGUAGES:
        raise Invalid(f"language: must be one of {', '.join(LANGUAGES)}", code="invalid_language")
    if user.language == language:
        return
    audit.record(
        session,
        actor=actor_for(user),
        action="staff.language_changed",
        subject_type="staff_user",
        subject_id=user.id,
        at=now,
        before={"language": user.language},
        after={"language": language},
    )
    user.language = language
    user.updated_at = now
    session.flush()


def actor_labels(session: Session, actors: Iterable[str]) -> dict[str, str]:
    """Readable names for audit actors: user:3 -> the staff e-mail; others stay as they are."""
    given = list(actors)
    ids = {int(a[5:]) for a in given if re.fullmatch(r"user:[0-9]{1,15}", a)}
    labels = {a: a for a in given}
    if ids:
        for user_id, email in session.execute(
            select(StaffUser.id, StaffUser.email).where(StaffUser.id.in_(ids))
        ):
            labels[f"user:{user_id}"] = email
    return labels
