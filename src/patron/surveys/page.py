"""The public survey page, /s/{token}: one form, no JavaScript, mobile-first, in ko/zh/en.

GET shows the questions (or why the link no longer works); POST records the answers once.
A second submit, from a second tab or a double tap, gets "answered already" and no points."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from patron import http
from patron.db.engine import Database
from patron.errors import PatronError
from patron.members.models import Member
from patron.programs.models import Program
from patron.surveys import service
from patron.surveys.schemas import LANGUAGES

router = APIRouter(include_in_schema=False)
Token = Path(max_length=100)
LangQ = Query(None, max_length=5)
_env = Environment(
    loader=FileSystemLoader(FilePath(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

TEXT: dict[str, dict[str, str]] = {
    "submit": {"ko": "보내기", "zh": "提交", "en": "Send"},
    "required": {"ko": "필수", "zh": "必填", "en": "required"},
    "optional": {"ko": "선택", "zh": "选填", "en": "optional"},
    "bonus": {
        "ko": "응답하시면 {points}포인트를 드립니다.",
        "zh": "回答即可获得 {points} 积分。",
        "en": "Answer to get {points} points.",
    },
    "thanks": {
        "ko": "소중한 의견 감사합니다!",
        "zh": "感谢您的宝贵意见！",
        "en": "Thank you for your feedback!",
    },
    "credited": {
        "ko": "{points}포인트가 적립되었습니다.",
        "zh": "已为您存入 {points} 积分。",
        "en": "{points} points were added to your account.",
    },
    "rating_low": {"ko": "매우 불만족", "zh": "非常不满意", "en": "Very poor"},
    "rating_high": {"ko": "매우 만족", "zh": "非常满意", "en": "Excellent"},
    "invalid_token": {
        "ko": "유효하지 않은 설문 링크입니다. 받으신 메시지의 링크를 다시 확인해 주세요.",
        "zh": "此问卷链接无效，请检查您收到的消息中的链接。",
        "en": "This survey link is not valid. Please check the link in the message you received.",
    },
    "already_answered": {
        "ko": "이미 응답하신 설문입니다. 감사합니다! 포인트는 한 번만 적립됩니다.",
        "zh": "您已回答过此问卷，谢谢！积分只发放一次。",
        "en": "You have answered this survey already — thank you! Points are given once.",
    },
    "invitation_expired": {
        "ko": "응답 기간이 지난 설문 링크입니다.",
        "zh": "此问卷链接已过期。",
        "en": "This survey link has expired.",
    },
    "survey_closed": {
        "ko": "종료된 설문입니다.",
        "zh": "此问卷已结束。",
        "en": "This survey has closed.",
    },
    "answer_missing": {
        "ko": "필수 질문에 답해 주세요.",
        "zh": "请回答所有必填问题。",
        "en": "Please answer every required question.",
    },
    "invalid_answer": {
        "ko": "응답을 확인해 주세요.",
        "zh": "请检查您的回答。",
        "en": "Please check your answers.",
    },
    "language": {"ko": "언어", "zh": "语言", "en": "Language"},
}
STATUS = {"invalid_token": 404, "answer_missing": 422, "invalid_answer": 422}


def t(key: str, lang: str, **values: Any) -> str:
    texts = TEXT[key]
    return (texts.get(lang) or texts["en"]).format(**values)


def _language(asked: str | None, member: Member | None, survey: Any) -> str:
    for lang in (asked, member.language if member else None, survey.fallback_language):
        if lang in LANGUAGES:
            return str(lang)
    return "en"


def _render(lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template("survey.html").render(
        lang=lang, t=lambda k, **v: t(k, lang, **v), **context
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
    )


def _view(survey: Any, lang: str) -> dict[str, Any]:
    fb = survey.fallback_language
    return {
        "title": service.text_in(survey.title, lang, fb),
        "intro": service.text_in(survey.intro, lang, fb) if survey.intro else "",
        "points": survey.points,
        "questions": [
            {
                "key": q["key"],
                "kind": q["kind"],
                "required": q.get("required", True),
                "label": service.text_in(q["label"], lang, fb),
                "choices": [
                    {"key": c["key"], "label": service.text_in(c["label"], lang, fb)}
                    for c in q.get("choices", [])
                ],
            }
            for q in survey.questions
        ],
    }


def _load(db: Database, token: str, lang_q: str | None) -> tuple[dict[str, Any], str, str]:
    """(view, language, program name); PatronError when the link does not work."""
    with db.unit_of_work(readonly=True) as session:
        invitation, survey = service.find_invitation(session, token)
        member = session.get(Member, invitation.member_id)
        program = session.get(Program, survey.program_id)
        lang = _language(lang_q, member, survey)
        view = _view(survey, lang)
        try:
            service.check_open(invitation, survey, http.now())
        except PatronError as exc:
            view["closed"] = exc.code
        return view, lang, program.name if program else ""


@router.get("/s/{token}")
def show(
    token: str = Token, lang: str | None = LangQ, db: Database = Depends(http.get_db)
) -> HTMLResponse:
    try:
        view, language, program = _load(db, token, lang)
    except PatronError as exc:
        language = lang if lang in LANGUAGES else "en"
        return _render(language, STATUS.get(exc.code, 409), message=exc.code, program="")
    if view.get("closed"):
        return _render(language, 409, message=view["closed"], program=program, survey=view)
    return _render(language, survey=view, program=program, values={})


@router.post("/s/{token}")
async def answer(
    request: Request,
    token: str = Token,
    lang: str | None = LangQ,
    db: Database = Depends(http.get_db),
) -> HTMLResponse:
    form = await request.form()
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and len(fields) < 50:
            fields.setdefault(key[:60], []).append(value[: service.MAX_TEXT + 1])
    asked = lang or next(iter(fields.get("lang", [])), None)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_answer, db, token, asked, fields)


def _answer(
    db: Database, token: str, asked: str | None, fields: dict[str, list[str]]
) -> HTMLResponse:
    try:
        view, language, program = _load(db, token, asked)
    except PatronError as exc:
        language = asked if asked in LANGUAGES else "en"
        return _render(language, STATUS.get(exc.code, 409), message=exc.code, program="")
    try:
        with db.unit_of_work() as session:
            response = service.submit(session, token, fields, language=language, now=http.now())
            points = response.points
    except service.InvalidAnswer as exc:
        return _render(
            language, 422, survey=view, program=program, error=exc.code, detail=exc.detail,
            values=fields,
        )  # fmt: skip
    except PatronError as exc:
        return _render(
            language, STATUS.get(exc.code, 409), message=exc.code, program=program, survey=view
        )
    return _render(language, survey=view, program=program, done=True, credited=points)
