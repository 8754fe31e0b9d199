"""Surveys: definitions, invitations, answers (with their points) and results.

Points for answering go through the ledger's own adjustment (`patron.sales.pipeline.adjust`),
once per invitation: the answer first flips `answered_at` with one conditional UPDATE, so of
two submits at once exactly one goes on to credit (PostgreSQL re-checks the row after the
other's commit; SQLite has one writer)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound, PatronError
from patron.members import service as members
from patron.programs.models import Program
from patron.surveys.models import (
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyMark,
    SurveyResponse,
)
from patron.surveys.schemas import (
    LANGUAGES,
    ChoiceCount,
    InvitationOut,
    QuestionResult,
    ResultsOut,
    StoreResult,
    SurveyIn,
    SurveyOut,
    TextAnswer,
)

LINK = Actor("survey_link")
MAX_TEXT = 2000


class SurveyNotFound(NotFound):
    code = "survey_not_found"


class InvalidToken(NotFound):
    """The link's token names no invitation (mistyped, or never issued)."""

    code = "invalid_token"


class SurveyRefused(Conflict):
    """already_answered, invitation_expired, survey_closed, recently_invited (409)."""

    code = "survey_refused"


class InvalidAnswer(Invalid):
    code = "invalid_answer"


# --- definitions ----------------------------------------------------------------------------


def _apply(row: Survey, body: SurveyIn) -> None:
    row.code, row.status = body.code, body.status
    row.title, row.intro = body.title.given(), body.intro.given()
    row.fallback_language = body.fallback_language
    row.questions = [q.model_dump(mode="json") for q in body.questions]
    row.starts_at, row.ends_at = body.starts_at, body.ends_at
    row.stores, row.channels = sorted(set(body.stores)), sorted(set(body.channels))
    row.points, row.cooldown_days, row.answer_days = (
        body.points,
        body.cooldown_days,
        body.answer_days,
    )


def _check_stores(session: Session, program: Program, codes: list[str]) -> None:
    from patron.programs.models import Store

    known = set(session.scalars(select(Store.code).where(Store.program_id == program.id)))
    unknown = sorted(set(codes) - known)
    if unknown:
        raise Invalid(f"unknown store(s): {', '.join(unknown)}", code="unknown_store")


def out(row: Survey) -> SurveyOut:
    return SurveyOut(
        code=row.code,
        status=row.status,
        title=row.title,
        intro=row.intro,
        fallback_language=row.fallback_language,
        questions=row.questions,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        stores=row.stores,
        channels=row.channels,
        points=row.points,
        cooldown_days=row.cooldown_days,
        answer_days=row.answer_days,
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def list_surveys(session: Session, program: Program) -> list[Survey]:
    return list(
        session.scalars(select(Survey).where(Survey.program_id == program.id).order_by(Survey.id))
    )


def get_survey(session: Session, program: Program, code: str) -> Survey:
    row = session.scalars(
        select(Survey).where(Survey.program_id == program.id, Survey.code == code)
    ).one_or_none()
    if row is None:
        raise SurveyNotFound(f"no survey {code} in {program.code}")
    return row


def create(
    session: Session, program: Program, body: SurveyIn, *, actor: Actor, now: datetime
) -> Survey:
    _check_stores(session, program, body.stores)
    exists = session.scalar(
        select(Survey.id).where(Survey.program_id == program.id, Survey.code == body.code)
    )
    if exists is not None:
        raise Conflict(f"survey {body.code} exists already", code="survey_exists")
    row = Survey(program_id=program.id, version=1, created_at=now, updated_at=now)
    row.updated_by = str(actor)
    _apply(row, body)
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="survey.created", subject_type="survey", subject_id=row.id,
        at=now, program_id=program.id, after=out(row).model_dump(mode="json"),
    )  # fmt: skip
    return row


def replace(
    session: Session,
    program: Program,
    code: str,
    body: SurveyIn,
    *,
    actor: Actor,
    now: datetime,
) -> Survey:
    row = get_survey(session, program, code)
    if body.code != code:
        raise Invalid("a survey's code cannot change", code="code_mismatch")
    _check_stores(session, program, body.stores)
    answered = session.scalar(select(func.count()).where(SurveyResponse.survey_id == row.id))
    old_keys = {(q["key"], q["kind"]) for q in row.questions}
    if answered and not old_keys <= {(q.key, q.kind) for q in body.questions}:
        raise Conflict(
            "this survey has answers: its questions may be reworded or added to, not removed "
            "or changed in kind (copy it to a new survey instead)",
            code="survey_answered",
        )
    before = out(row).model_dump(mode="json")
    _apply(row, body)
    row.version += 1
    row.updated_at, row.updated_by = now, str(actor)
    session.flush()
    audit.record(
        session, actor=actor, action="survey.changed", subject_type="survey", subject_id=row.id,
        at=now, program_id=program.id, before=before, after=out(row).model_dump(mode="json"),
    )  # fmt: skip
    return row


def archive(
    session: Session, program: Program, code: str, *, actor: Actor, now: datetime
) -> Survey:
    row = get_survey(session, program, code)
    if row.status != "archived":
        before = row.status
        row.status, row.version = "archived", row.version + 1
        row.updated_at, row.updated_by = now, str(actor)
        audit.record(
            session, actor=actor, action="survey.archived", subject_type="survey",
            subject_id=row.id, at=now, program_id=program.id, before={"status": before},
            after={"status": "archived"},
        )  # fmt: skip
    return row


def is_open(row: Survey, now: datetime) -> bool:
    return (
        row.status == "active"
        and (row.starts_at is None or row.starts_at <= now)
        and (row.ends_at is None or now < row.ends_at)
    )


def text_in(texts: dict[str, str], language: str, fallback: str) -> str:
    return texts.get(language) or texts.get(fallback) or next(iter(texts.values()), "")


# --- invitations ----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def may_invite(session: Session, survey: Survey, member_id: int, now: datetime) -> bool:
    """A cheap read: False when the member was invited within the cooldown (`_claim_mark`
    still decides, under concurrency)."""
    last = session.scalar(
        select(SurveyMark.last_invited_at).where(
            SurveyMark.survey_id == survey.id, SurveyMark.member_id == member_id
        )
    )
    return last is None or last <= now - timedelta(days=survey.cooldown_days)


def _claim_mark(session: Session, survey: Survey, member_id: int, now: datetime) -> bool:
    """Whether `member_id` may be invited now (and mark it): one conditional UPDATE or an
    INSERT that ignores a conflict, so two workers at once never both win."""
    # RETURNING, not rowcount: psycopg may report -1 for an INSERT … ON CONFLICT DO NOTHING.
    insert: Any = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(
        SurveyMark
    )
    created = session.scalar(
        insert.values(survey_id=survey.id, member_id=member_id, last_invited_at=now)
        .on_conflict_do_nothing(index_elements=["survey_id", "member_id"])
        .returning(SurveyMark.member_id)
    )
    if created is not None:
        return True
    moved = session.execute(
        update(SurveyMark)
        .where(
            SurveyMark.survey_id == survey.id,
            SurveyMark.member_id == member_id,
            SurveyMark.last_invited_at <= now - timedelta(days=survey.cooldown_days),
        )
        .values(last_invited_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def invite(
    session: Session,
    survey: Survey,
    member_id: int,
    *,
    now: datetime,
    store: str | None = None,
    channel: str | None = None,
    order: str | None = None,
    event_id: int | None = None,
) -> tuple[SurveyInvitation, str] | None:
    """A new invitation and its token (shown once, never stored), or None when the member
    was invited to this survey within its cooldown."""
    if not _claim_mark(session, survey, member_id, now):
        return None
    token = secrets.token_urlsafe(24)
    row = SurveyInvitation(
        survey_id=survey.id,
        program_id=survey.program_id,
        member_id=member_id,
        token_hash=token_hash(token),
        store=store,
        channel=channel,
        order_ref=order,
        event_id=event_id,
        created_at=now,
        expires_at=now + timedelta(days=survey.answer_days),
    )
    session.add(row)
    session.flush()
    return row, token


def invite_manually(
    session: Session,
    program: Program,
    code: str,
    member_ref: Any,
    *,
    store: str | None,
    channel: str | None,
    now: datetime,
) -> tuple[SurveyInvitation, str]:
    survey = get_survey(session, program, code)
    if not is_open(survey, now):
        raise SurveyRefused("this survey is not open now", code="survey_closed")
    member = members.find_member(session, member_ref, program=program)
    made = invite(session, survey, member.id, now=now, store=store, channel=channel)
    if made is None:
        raise SurveyRefused(
            f"member {member.id} was invited to {code} within the last {survey.cooldown_days} days",
            code="recently_invited",
        )
    return made


def open_surveys(session: Session, program_id: int, *, now: datetime) -> list[Survey]:
    rows = session.scalars(
        select(Survey).where(Survey.program_id == program_id, Survey.status == "active")
    )
    return [s for s in rows if is_open(s, now)]


def matching(surveys: list[Survey], *, store: str | None, channel: str | None) -> list[Survey]:
    """The surveys that a purchase at `store` through `channel` invites to."""
    return [
        s
        for s in surveys
        if (not s.stores or store in s.stores) and (not s.channels or channel in s.channels)
    ]


def invitation_out(
    row: SurveyInvitation, token: str | None = None, base_url: str = ""
) -> InvitationOut:
    return InvitationOut(
        id=row.id,
        member_id=row.member_id,
        store=row.store,
        channel=row.channel,
        order=row.order_ref,
        created_at=row.created_at,
        expires_at=row.expires_at,
        answered_at=row.answered_at,
        token=token,
        url=f"{base_url.rstrip('/')}/s/{token}" if token else None,
    )


def list_invitations(
    session: Session, survey: Survey, *, cursor: int | None, limit: int
) -> tuple[list[SurveyInvitation], int | None]:
    stmt = select(SurveyInvitation).where(SurveyInvitation.survey_id == survey.id)
    if cursor is not None:
        stmt = stmt.where(SurveyInvitation.id < cursor)
    rows = list(session.scalars(stmt.order_by(SurveyInvitation.id.desc()).limit(limit + 1)))
    more = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], more


def member_invitations(
    session: Session, program_id: int, member_id: int, *, now: datetime, limit: int = 10
) -> list[tuple[SurveyInvitation, Survey]]:
    """The member's open invitations (not answered, not expired, survey still taking
    answers), newest first: what her member page offers to answer."""
    rows = session.execute(
        select(SurveyInvitation, Survey)
        .join(Survey, Survey.id == SurveyInvitation.survey_id)
        .where(
            SurveyInvitation.program_id == program_id,
            SurveyInvitation.member_id == member_id,
            SurveyInvitation.answered_at.is_(None),
            SurveyInvitation.expires_at > now,
            Survey.status != "archived",
        )
        .order_by(SurveyInvitation.id.desc())
        .limit(limit)
    ).all()
    return [(i, s) for i, s in rows if s.ends_at is None or now < s.ends_at]


def reissue_link(
    session: Session, program_id: int, member_id: int, invitation_id: int, *, now: datetime
) -> str:
    """A fresh token for one of the member's own open invitations (her member page's
    "answer" button; only hashes are stored, so the link cannot be read back). The link in
    the message stops working; the invitation, and its once-only points, stay the same."""
    row = session.scalars(
        select(SurveyInvitation).where(
            SurveyInvitation.id == invitation_id,
            SurveyInvitation.program_id == program_id,
            SurveyInvitation.member_id == member_id,
        )
    ).one_or_none()
    if row is None:  # not hers, or none: the same answer, so ids reveal nothing
        raise InvalidToken("no such survey invitation")
    survey = session.get(Survey, row.survey_id)
    assert survey is not None
    check_open(row, survey, now)
    token = secrets.token_urlsafe(24)
    row.token_hash = token_hash(token)
    session.flush()
    return token


# --- answering ------------------------------------------------------------------------------


def find_invitation(session: Session, token: str) -> tuple[SurveyInvitation, Survey]:
    if not 20 <= len(token) <= 64:
        raise InvalidToken("this survey link is not valid")
    row = session.scalars(
        select(SurveyInvitation).where(SurveyInvitation.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        raise InvalidToken("this survey link is not valid")
    survey = session.get(Survey, row.survey_id)
    assert survey is not None
    return row, survey


def check_open(invitation: SurveyInvitation, survey: Survey, now: datetime) -> None:
    if invitation.answered_at is not None:
        raise SurveyRefused("this survey was answered already: thank you", code="already_answered")
    if now >= invitation.expires_at:
        raise SurveyRefused("this survey link has expired", code="invitation_expired")
    if survey.status == "archived" or (survey.ends_at is not None and now >= survey.ends_at):
        raise SurveyRefused("this survey has closed", code="survey_closed")


def parse_answers(survey: Survey, form: dict[str, list[str]]) -> dict[str, Any]:
    """The form's values as answers per question key, checked against the questions:
    rating 1–5, a known choice, at most MAX_TEXT characters; required ones present."""
    answers: dict[str, Any] = {}
    for q in survey.questions:
        key, kind = q["key"], q["kind"]
        values = [v.strip() for v in form.get(key, []) if v.strip()]
        choices = {c["key"] for c in q.get("choices", [])}
        if not values:
            if q.get("required", True):
                raise InvalidAnswer(f"please answer question {key}", code="answer_missing")
            continue
        if kind == "rating":
            if len(values) != 1 or values[0] not in {"1", "2", "3", "4", "5"}:
                raise InvalidAnswer(f"question {key}: a rating is 1 to 5")
            answers[key] = int(values[0])
        elif kind == "single":
            if len(values) != 1 or values[0] not in choices:
                raise InvalidAnswer(f"question {key}: choose one of the choices")
            answers[key] = values[0]
        elif kind == "multiple":
            if not set(values) <= choices:
                raise InvalidAnswer(f"question {key}: choose among the choices")
            answers[key] = sorted(set(values))
        else:
            if len(values) != 1 or len(values[0]) > MAX_TEXT or "\x00" in values[0]:
                raise InvalidAnswer(f"question {key}: at most {MAX_TEXT} characters")
            answers[key] = values[0]
    unknown = set(form) - {q["key"] for q in survey.questions} - {"lang"}
    if unknown:
        raise InvalidAnswer(f"no question {sorted(unknown)[0]} in this survey")
    return answers


def submit(
    session: Session,
    token: str,
    form: dict[str, list[str]],
    *,
    language: str,
    now: datetime,
) -> SurveyResponse:
    """Record the answers of the invitation `token` names, and credit its points once."""
    from patron.sales import pipeline
    from patron.sales.schemas import AdjustRequest

    invitation, survey = find_invitation(session, token)
    check_open(invitation, survey, now)
    answers = parse_answers(survey, form)
    won = session.execute(
        update(SurveyInvitation)
        .where(SurveyInvitation.id == invitation.id, SurveyInvitation.answered_at.is_(None))
        .values(answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if not won.rowcount:  # type: ignore[attr-defined]
        raise SurveyRefused("this survey was answered already: thank you", code="already_answered")
    response = SurveyResponse(
        survey_id=survey.id,
        invitation_id=invitation.id,
        program_id=survey.program_id,
        member_id=invitation.member_id,
        store=invitation.store,
        channel=invitation.channel,
        language=language if language in LANGUAGES else survey.fallback_language,
        answered_at=now,
        answers=answers,
        points=0,
    )
    session.add(response)
    session.flush()
    for key, value in answers.items():
        common = {"response_id": response.id, "survey_id": survey.id, "question": key,
                  "store": invitation.store, "answered_at": now}  # fmt: skip
        if isinstance(value, int):
            session.add(SurveyAnswer(**common, rating=value))
        elif isinstance(value, list):
            session.add_all(SurveyAnswer(**common, choice=v) for v in value)
        elif any(q["key"] == key and q["kind"] == "single" for q in survey.questions):
            session.add(SurveyAnswer(**common, choice=value))
        else:
            session.add(SurveyAnswer(**common, text=value))
    if survey.points > 0:
        program = session.get(Program, survey.program_id)
        assert program is not None
        try:
            with session.begin_nested():
                done = pipeline.adjust(
                    session,
                    program,
                    AdjustRequest.model_validate(
                        {
                            "member": {"id": invitation.member_id},
                            "points": survey.points,
                            "reason": f"survey {survey.code} answered (invitation {invitation.id})",
                        }
                    ),
                    actor=LINK,
                    now=now,
                )
        except PatronError as exc:
            # The answer still counts; the member's account cannot take points (blocked,
            # closed): say why, and staff may adjust by hand.
            response.points_note = f"{exc.code}: {exc.detail}"[:200]
        else:
            response.points, response.entry_id = survey.points, done.entry.id
    session.flush()
    _answered_event(session, survey, invitation, response)
    return response


def _answered_event(
    session: Session, survey: Survey, invitation: SurveyInvitation, response: SurveyResponse
) -> None:
    """survey.answered to the outbox, in the answer's transaction (webhooks see it)."""
    from patron.events.outbox import emit, iso_utc

    program = session.get(Program, survey.program_id)
    assert program is not None
    emit(
        session,
        kind="survey.answered",
        program_id=survey.program_id,
        member_id=invitation.member_id,
        at=response.answered_at,
        payload={
            "program": program.code,
            "member_id": invitation.member_id,
            "survey": survey.code,
            "response_id": response.id,
            "invitation_id": invitation.id,
            "store": invitation.store,
            "channel": invitation.channel,
            "order": invitation.order_ref,
            "language": response.language,
            "answers": response.answers,
            "points": response.points,
            "answered_at": iso_utc(response.answered_at),
        },
    )


# --- results --------------------------------------------------------------------------------


def bounds(
    program: Program, date_from: date | None, date_to: date | None
) -> tuple[datetime | None, datetime | None]:
    """The period's first and last day (in the program's timezone) as UTC instants [lo, hi)."""
    tz = ZoneInfo(program.timezone)
    try:
        lo = datetime.combine(date_from, time(), tz) if date_from else None
        hi = datetime.combine(date_to + timedelta(days=1), time(), tz) if date_to else None
        for edge in (lo, hi):
            if edge is not None:
                edge.astimezone(UTC)  # year 1 or 9999 may not convert
    except OverflowError:
        raise Invalid("the period is out of range", code="invalid_period") from None
    if lo and hi and hi <= lo:
        raise Invalid("the period ends before it starts", code="invalid_period")
    return lo, hi


def _where(model: Any, survey: Survey, store: str | None, lo: datetime | None, hi: datetime | None, at: Any) -> list[Any]:  # fmt: skip
    conds = [model.survey_id == survey.id]
    if store is not None:
        conds.append(model.store == store)
    if lo is not None:
        conds.append(at >= lo)
    if hi is not None:
        conds.append(at < hi)
    return conds


def results(
    session: Session,
    program: Program,
    survey: Survey,
    *,
    store: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    language: str = "en",
) -> ResultsOut:
    """Counts, average ratings and the distribution of every question: a handful of GROUP BY
    statements over the flat answers, whatever the number of responses."""
    lo, hi = bounds(program, date_from, date_to)
    lang, fb = language, survey.fallback_language
    inv = SurveyInvitation
    invitations = session.scalar(
        select(func.count()).where(*_where(inv, survey, store, lo, hi, inv.created_at))
    )
    resp = SurveyResponse
    rconds = _where(resp, survey, store, lo, hi, resp.answered_at)
    responses, points = session.execute(
        select(func.count(), func.coalesce(func.sum(resp.points), 0)).where(*rconds)
    ).one()
    a = SurveyAnswer
    aconds = _where(a, survey, store, lo, hi, a.answered_at)
    counts: dict[tuple[str, Any], int] = {}
    for question, rating, choice, n in session.execute(
        select(a.question, a.rating, a.choice, func.count())
        .where(*aconds, a.text.is_(None))
        .group_by(a.question, a.rating, a.choice)
    ):
        counts[(question, rating if rating is not None else choice)] = n
    answered: dict[str, int] = dict(
        session.execute(
            select(a.question, func.count(func.distinct(a.response_id)))
            .where(*aconds)
            .group_by(a.question)
        ).all()
    )
    questions = []
    for q in survey.questions:
        key = q["key"]
        result = QuestionResult(
            key=key,
            kind=q["kind"],
            label=text_in(q["label"], lang, fb),
            answers=answered.get(key, 0),
        )
        if q["kind"] == "rating":
            dist = [(str(r), counts.get((key, r), 0)) for r in range(1, 6)]
            total = sum(n for _, n in dist)
            result.distribution = [ChoiceCount(key=k, label=k, count=n) for k, n in dist]
            if total:
                result.average = round(sum(int(k) * n for k, n in dist) / total, 2)
        elif q["kind"] in ("single", "multiple"):
            result.distribution = [
                ChoiceCount(
                    key=c["key"],
                    label=text_in(c["label"], lang, fb),
                    count=counts.get((key, c["key"]), 0),
                )
                for c in q["choices"]
            ]
        questions.append(result)
    rating_keys = [q["key"] for q in survey.questions if q["kind"] == "rating"]
    ratings = a.rating.is_not(None)
    avg_all = session.scalar(select(func.avg(a.rating)).where(*aconds, ratings))
    per_store = session.execute(
        select(resp.store, func.count()).where(*rconds).group_by(resp.store).order_by(resp.store)
    ).all()
    avg_store: dict[str | None, Any] = dict(
        session.execute(
            select(a.store, func.avg(a.rating)).where(*aconds, ratings).group_by(a.store)
        ).all()
    )
    return ResultsOut(
        survey=survey.code,
        date_from=date_from.isoformat() if date_from else None,
        date_to=date_to.isoformat() if date_to else None,
        store=store,
        invitations=invitations or 0,
        responses=responses,
        response_rate=round(responses / invitations, 4) if invitations else None,
        average_rating=round(float(avg_all), 2) if avg_all is not None and rating_keys else None,
        points_given=int(points),
        questions=questions,
        stores=[
            StoreResult(
                store=s,
                responses=n,
                average_rating=round(float(avg_store[s]), 2)
                if avg_store.get(s) is not None
                else None,
            )
            for s, n in per_store
        ],
    )


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_texts(
    session: Session,
    program: Program,
    survey: Survey,
    *,
    query: str | None = None,
    store: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 200,
) -> list[TextAnswer]:
    """Free-text answers, newest first; `query` is a case-insensitive substring (lower() on
    both sides, LIKE with the wildcards escaped: the same on SQLite and PostgreSQL)."""
    lo, hi = bounds(program, date_from, date_to)
    a = SurveyAnswer
    stmt = select(a).where(*_where(a, survey, store, lo, hi, a.answered_at), a.text.is_not(None))
    if query:
        stmt = stmt.where(func.lower(a.text).like(_like(query), escape="\\"))
    rows = session.scalars(stmt.order_by(a.answered_at.desc(), a.id.desc()).limit(limit))
    return [
        TextAnswer(
            response_id=r.response_id,
            answered_at=r.answered_at,
            store=r.store,
            question=r.question,
            text=r.text or "",
        )
        for r in rows
    ]
