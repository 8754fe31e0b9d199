"""The unsubscribe link in marketing e-mails: /u/<token>.

GET shows a page with one button (link scanners in mail systems open links, so opening one
must not unsubscribe anybody); POST withdraws e-mail marketing consent, recorded with source
"unsubscribe_link". Mail clients' one-click unsubscribe (RFC 8058: the List-Unsubscribe-Post
header) POSTs to the same address. The token is signed (patron.members.consent), so nobody can
unsubscribe somebody else. The page speaks the member's language.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.members import consent
from patron.members.models import Member
from patron.programs.models import Program

router = APIRouter(include_in_schema=False)
Token = Path(max_length=120)

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "Unsubscribe", "ko": "수신 거부", "zh": "退订"},
    "ask": {
        "en": "Stop marketing e-mails to {email}? Messages about your own account (points earned, "
        "sign-in codes) still arrive.",
        "ko": "{email}(으)로 보내는 광고성 이메일을 그만 받으시겠어요? 적립 내역이나 로그인 코드처럼 "
        "회원님 계정에 관한 안내는 계속 보내 드립니다.",
        "zh": "不再向 {email} 发送营销邮件？与您账户相关的通知（积分到账、登录验证码）仍会照常发送。",
    },
    "button": {"en": "Unsubscribe", "ko": "수신 거부하기", "zh": "确认退订"},
    "done": {
        "en": "Done: {email} gets no more marketing e-mails from {program}.",
        "ko": "완료되었습니다. {email}(으)로 {program}의 광고성 이메일을 더 이상 보내지 않습니다.",
        "zh": "已退订：{program} 将不再向 {email} 发送营销邮件。",
    },
    "invalid": {
        "en": "This unsubscribe link is not valid.",
        "ko": "유효하지 않은 수신 거부 링크입니다.",
        "zh": "此退订链接无效。",
    },
}
LINK = Actor("member_link")


def _t(key: str, lang: str, **values: str) -> str:
    texts = TEXT[key]
    return (texts.get(lang) or texts["en"]).format(**{k: escape(v) for k, v in values.items()})


def _page(lang: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_t('title', lang)}</title><style>"
        "body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}"
        "button{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #333;"
        "background:#222;color:#fff}</style></head>"
        f"<body><h1>{_t('title', lang)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _member(db: Database, token: str) -> tuple[Member, str] | None:
    with db.unit_of_work(readonly=True) as session:
        found = consent.read_token(session, token, now=http.now())
        if found is None:
            return None
        member = session.get(Member, found[0])
        if member is None:
            return None
        session.expunge(member)
        return member, found[1]


def _program_name(db: Database, member_id: int) -> str:
    from sqlalchemy import select

    from patron.ledger.models import Account

    with db.unit_of_work(readonly=True) as session:
        name = session.scalar(
            select(Program.name)
            .join(Account, Account.program_id == Program.id)
            .where(Account.member_id == member_id)
            .order_by(Account.id)
            .limit(1)
        )
        return name or "Patron"


@router.get("/u/{token}")
def ask(token: str = Token, db: Database = Depends(http.get_db)) -> HTMLResponse:
    found = _member(db, token)
    if found is None:
        return _page("en", f"<p>{_t('invalid', 'en')}</p>", 404)
    member, _channel = found
    lang = member.language if member.language in ("en", "ko", "zh") else "en"
    return _page(
        lang,
        f"<p>{_t('ask', lang, email=member.email or '')}</p>"
        f'<form method="post"><button type="submit">{_t("button", lang)}</button></form>',
    )


@router.post("/u/{token}")
def unsubscribe(token: str = Token, db: Database = Depends(http.get_db)) -> HTMLResponse:
    found = _member(db, token)
    if found is None:
        return _page("en", f"<p>{_t('invalid', 'en')}</p>", 404)
    member, channel = found
    with db.unit_of_work() as session:
        fresh = session.get(Member, member.id)
        assert fresh is not None
        if consent.current(session, fresh, channel):
            consent.change(
                session,
                fresh,
                [channel],
                granted=False,
                source="unsubscribe_link",
                actor=LINK,
                now=http.now(),
            )
    lang = member.language if member.language in ("en", "ko", "zh") else "en"
    return _page(
        lang,
        f"<p>{_t('done', lang, email=member.email or '', program=_program_name(db, member.id))}</p>",
    )
