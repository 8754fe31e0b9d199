"""Staff accounts and API keys (owners only).

Accounts: list, create (with a typed or generated password, a generated one shown once), change
name, role and language, set a new password, unlock, switch off and on, end sessions. The last
active owner can be neither demoted nor switched off, so someone can always manage staff.
API keys: list, create (the full key is shown once, on the page that answers the form, and never
stored), revoke after a confirmation. Every change is audited with the signed-in user as actor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from patron import clock, http
from patron.access import KeyCreate
from patron.admin import context, forms, i18n, program_context, service, setup_service
from patron.admin.deps import OutOfReach, Staff, form_data, get_db, require
from patron.admin.roles import ROLES
from patron.admin.templating import path_for, render
from patron.auth import service as keys
from patron.errors import NotFound, PatronError

router = APIRouter()
UserId = Path(ge=1, le=2**53)
KeyId = Path(ge=1, le=2**53)

USER_FIELDS = ("email", "name", "role", "language", "password")
NOTICES = frozenset(
    {
        "created",
        "saved",
        "unchanged",
        "password",
        "unlocked",
        "not_locked",
        "off",
        "on",
        "ended",
        "reach",
    }
)
KEY_NOTICES = frozenset({"revoked"})
# Refusals from the services that name no field in a way forms.from_error understands.
CODE_MESSAGES = {
    "invalid_role": ("role", "form.error.choice"),
    "invalid_language": ("language", "form.error.choice"),
    "last_owner": ("role", "staff.error.last_owner"),
    "invalid_name": ("name", "staff.error.name"),
    "invalid_staff_reach": ("programs", "staff.reach.error.none"),
    "reach_not_allowed": ("programs", "staff.reach.error.more"),
    "last_unrestricted_owner": ("programs", "staff.reach.error.last_owner"),
}


def _errors(exc: PatronError, lang: str, fields: tuple[str, ...]) -> forms.Errors:
    if exc.code in CODE_MESSAGES:
        field, key = CODE_MESSAGES[exc.code]
        return {field if field in fields else forms.FORM: i18n.translate(key, lang)}
    return forms.from_error(exc, lang, fields)


def _role_options(lang: str) -> list[tuple[str, str]]:
    return [(r, i18n.translate(f"role.{r}", lang)) for r in ROLES]


def _language_options() -> list[tuple[str, str]]:
    return list(i18n.LANGUAGE_NAMES.items())


def _program_choices(session: Any) -> list[tuple[str, str]]:
    """(code, name) of the programs the signed-in user reaches, for the reach checkboxes."""
    return [(p.code, p.name) for p in program_context.visible(context.programs(session))]


def _ticked(form: dict[str, str]) -> list[str]:
    """One checkbox per program (program_<code>=1); a plain dict keeps one value per name."""
    return sorted(k.removeprefix("program_") for k, v in form.items() if k.startswith("program_"))


# --- the list ---------------------------------------------------------------------------------


@router.get("/staff", name="staff_list")
def staff_list(request: Request, staff: Staff = Depends(require("staff.manage"))) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        # A manager limited to programs lists only the users inside their programs.
        reach = {
            u.id: u.programs
            for u in service.list_users(session)
            if service.manages(staff.programs, u)
        }
        rows = [r for r in setup_service.staff_rows(session, now=clock.now()) if r.id in reach]
        return render(
            request,
            "staff/list.html",
            tz=context.default_timezone(session),
            section="staff",
            rows=rows,
            reach=reach,
            done=done if done in NOTICES else None,
        )


# --- a new account ----------------------------------------------------------------------------


def _new_page(
    request: Request,
    staff: Staff,
    *,
    values: dict[str, str] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        choices = _program_choices(session)
    return render(
        request,
        "staff/new.html",
        status=status,
        section="staff",
        v=values
        or {
            "email": "",
            "name": "",
            "role": "support",
            "language": staff.language,
            # A manager limited to programs gives their own by default (never every program).
            "programs": [] if staff.programs is None else sorted(staff.programs),
        },
        errors=errors or {},
        roles=_role_options(staff.language),
        languages_list=_language_options(),
        program_choices=choices,
        limited=staff.programs is not None,
    )


@router.get("/staff/new", name="staff_new")
def staff_new(request: Request, staff: Staff = Depends(require("staff.manage"))) -> Response:
    return _new_page(request, staff)


@router.post("/staff/new", name="staff_create")
def staff_create(
    request: Request,
    staff: Staff = Depends(require("staff.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    reach = _ticked(form)
    values: dict[str, Any] = {
        "email": form.get("email", "").strip(),
        "name": form.get("name", "").strip(),
        "role": form.get("role", ""),
        "language": form.get("language", ""),
        "programs": reach,
    }
    password = form.get("password", "")
    errors = forms.required(values, ("email", "name"), lang)
    if staff.programs is not None and not reach:
        errors["programs"] = i18n.translate("staff.reach.error.none", lang)
    if values["role"] not in ROLES:
        errors["role"] = i18n.translate("form.error.choice", lang)
    if values["language"] not in i18n.LANGUAGES:
        errors["language"] = i18n.translate("form.error.choice", lang)
    if errors:
        return _new_page(request, staff, values=values, errors=errors, status=422)
    generated = not password
    if generated:
        password = service.generate_password()
    try:
        with get_db(request).unit_of_work() as session:
            user = service.create_user(
                session,
                email=values["email"],
                name=values["name"],
                role=values["role"],
                language=values["language"],
                password=password,
                actor=staff.actor,
                now=clock.now(),
                programs=reach or None,
                granter=staff.programs,
            )
            user_id, email, name = user.id, user.email, user.name
    except PatronError as exc:
        errors = _errors(exc, lang, (*USER_FIELDS, "programs"))
        if exc.code == "program_not_found":
            errors = {"programs": exc.detail}
        return _new_page(request, staff, values=values, errors=errors, status=422)
    if generated:
        return _password_shown(request, "created", user_id, email, name, password)
    return RedirectResponse(
        path_for(request, "staff_detail", {"done": "created"}, user_id=user_id), status_code=303
    )


def _password_shown(
    request: Request, why: str, user_id: int, email: str, name: str, password: str
) -> Response:
    """The one time a generated password is shown: on the page answering the form, not stored
    anywhere, and never cached (every admin page is sent with Cache-Control: no-store)."""
    return render(
        request,
        "staff/password.html",
        section="staff",
        why=why,
        user_id=user_id,
        email=email,
        name=name,
        password=password,
    )


# --- one account ------------------------------------------------------------------------------


def _detail_page(
    request: Request,
    staff: Staff,
    user_id: int,
    *,
    errors: dict[str, forms.Errors] | None = None,
    values: dict[str, dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        user = setup_service.staff_row(session, user_id, now=clock.now())
        user_programs = service.get_user(session, user_id).programs
        choices = _program_choices(session)
        changes = setup_service.recent_changes(
            session, subject_type="staff_user", subject_id=user_id, limit=20
        )
        labels = service.actor_labels(session, [c.actor for c in changes])
        return render(
            request,
            "staff/detail.html",
            status=status,
            tz=context.default_timezone(session),
            section="staff",
            user=user,
            is_me=user.id == staff.user_id,
            locked=user.locked(clock.now()),
            changes=changes,
            labels=labels,
            errors=errors or {},
            values=values or {},
            done=done if done in NOTICES else None,
            roles=_role_options(staff.language),
            languages_list=_language_options(),
            user_programs=user_programs,
            program_choices=choices,
            # Only a manager who reaches every program changes what a user reaches.
            can_set_reach=staff.programs is None,
        )


def _back(request: Request, user_id: int, done: str) -> Response:
    return RedirectResponse(
        path_for(request, "staff_detail", {"done": done}, user_id=user_id), status_code=303
    )


@router.get("/staff/users/{user_id}", name="staff_detail")
def staff_detail(
    request: Request, user_id: int = UserId, staff: Staff = Depends(require("staff.manage"))
) -> Response:
    return _detail_page(request, staff, user_id)


@router.post("/staff/users/{user_id}", name="staff_save")
def staff_save(
    request: Request,
    user_id: int = UserId,
    staff: Staff = Depends(require("staff.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = {
        "name": form.get("name", "").strip(),
        "role": form.get("role", ""),
        "language": form.get("language", ""),
    }
    fields = ("name", "role", "language")
    errors = forms.required(values, ("name",), lang)
    if errors:
        return _detail_page(
            request,
            staff,
            user_id,
            errors={"details": errors},
            values={"details": values},
            status=422,
        )
    try:
        with get_db(request).unit_of_work() as session:
            changed = setup_service.update_user(
                session,
                service.get_user(session, user_id),
                name=values["name"],
                role=values["role"],
                language=values["language"],
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        return _detail_page(
            request,
            staff,
            user_id,
            errors={"details": _errors(exc, lang, fields)},
            values={"details": values},
            status=422,
        )
    if user_id == staff.user_id and values["role"] != staff.role:
        # Owners only manage staff: someone who just gave that up lands on the home page.
        return RedirectResponse(path_for(request, "home"), status_code=303)
    return _back(request, user_id, "saved" if changed else "unchanged")


@router.post("/staff/users/{user_id}/programs", name="staff_programs")
def staff_programs(
    request: Request,
    user_id: int = UserId,
    staff: Staff = Depends(require("staff.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """What a user reaches: every program, or the ticked ones. Only a manager who reaches every
    program may change it; it applies at the user's next request (no new sign-in)."""
    if staff.programs is not None:
        raise OutOfReach("staff.reach")
    lang = staff.language
    reach = _ticked(form)
    every = form.get("reach") == "all"
    if not every and not reach:
        errors = {"programs": i18n.translate("staff.reach.error.none", lang)}
        return _detail_page(request, staff, user_id, errors={"reach": errors}, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            changed = service.set_programs(
                session,
                service.get_user(session, user_id),
                None if every else reach,
                actor=staff.actor,
                granter=staff.programs,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404 and exc.code != "program_not_found":
            raise
        errors = _errors(exc, lang, ("programs",))
        if exc.code == "program_not_found":
            errors = {"programs": exc.detail}
        return _detail_page(request, staff, user_id, errors={"reach": errors}, status=422)
    return _back(request, user_id, "reach" if changed else "unchanged")


@router.post("/staff/users/{user_id}/password", name="staff_password")
def staff_password(
    request: Request,
    user_id: int = UserId,
    staff: Staff = Depends(require("staff.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    if user_id == staff.user_id:
        # Their own password needs the current one: that is My account's form.
        return RedirectResponse(path_for(request, "account"), status_code=303)
    password = form.get("password", "")
    generated = not password
    if generated:
        password = service.generate_password()
    try:
        with get_db(request).unit_of_work() as session:
            user = service.get_user(session, user_id)
            service.set_password(
                session, user, password=password, actor=staff.actor, now=clock.now()
            )
            email, name = user.email, user.name
    except PatronError as exc:
        if exc.status == 404:
            raise
        return _detail_page(
            request,
            staff,
            user_id,
            errors={"password": _errors(exc, lang, ("password",))},
            status=422,
        )
    if generated:
        return _password_shown(request, "reset", user_id, email, name, password)
    return _back(request, user_id, "password")


@router.post("/staff/users/{user_id}/unlock", name="staff_unlock")
def staff_unlock(
    request: Request, user_id: int = UserId, staff: Staff = Depends(require("staff.manage"))
) -> Response:
    with get_db(request).unit_of_work() as session:
        was_locked = service.unlock(
            session, service.get_user(session, user_id), actor=staff.actor, now=clock.now()
        )
    return _back(request, user_id, "unlocked" if was_locked else "not_locked")


@router.post("/staff/users/{user_id}/active", name="staff_active")
def staff_active(
    request: Request,
    user_id: int = UserId,
    staff: Staff = Depends(require("staff.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    active = form.get("active") == "1"
    lang = staff.language
    if user_id == staff.user_id and not active:
        errors = {forms.FORM: i18n.translate("staff.error.self_off", lang)}
        return _detail_page(request, staff, user_id, errors={"status": errors}, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            setup_service.set_user_active(
                session,
                service.get_user(session, user_id),
                active=active,
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        errors = _errors(exc, lang, ())
        return _detail_page(request, staff, user_id, errors={"status": errors}, status=422)
    return _back(request, user_id, "on" if active else "off")


@router.post("/staff/users/{user_id}/sessions", name="staff_sessions")
def staff_sessions(
    request: Request, user_id: int = UserId, staff: Staff = Depends(require("staff.manage"))
) -> Response:
    with get_db(request).unit_of_work() as session:
        setup_service.end_sessions(
            session,
            service.get_user(session, user_id),
            actor=staff.actor,
            now=clock.now(),
            # An owner ending their own sessions stays signed in here.
            keep=staff.session_id if user_id == staff.user_id else None,
        )
    return _back(request, user_id, "ended")


# --- API keys ---------------------------------------------------------------------------------


SCOPES = keys.SCOPES


def _keys_page(
    request: Request,
    staff: Staff,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        # A manager limited to programs sees only the keys limited to programs of theirs.
        rows = [k for k in keys.list_keys(session) if service.within(staff.programs, k.programs)]
        creators = setup_service.key_creators(session, rows)
        return render(
            request,
            "staff/keys.html",
            status=status,
            tz=context.default_timezone(session),
            section="staff",
            keys=rows,
            creators=creators,
            labels=service.actor_labels(session, creators.values()),
            scopes=SCOPES,
            program_choices=_program_choices(session),
            limited=staff.programs is not None,
            v=values or {"name": "", "scopes": ["pos"], "programs": [], "stores": ""},
            errors=errors or {},
            done=done if done in KEY_NOTICES else None,
        )


@router.get("/staff/keys", name="apikeys_list")
def apikeys_list(request: Request, staff: Staff = Depends(require("apikeys.manage"))) -> Response:
    return _keys_page(request, staff)


@router.post("/staff/keys", name="apikey_create")
def apikey_create(
    request: Request,
    staff: Staff = Depends(require("apikeys.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    # One checkbox per scope (scope_pos=1, ...): a plain dict keeps one value per name.
    chosen = [s for s in SCOPES if form.get(f"scope_{s}") == "1"]
    # One checkbox per program (program_<code>=1); stores as codes separated by commas.
    reach = sorted(k.removeprefix("program_") for k, v in form.items() if k.startswith("program_"))
    stores_text = form.get("stores", "").strip()
    stores = [c.strip() for c in stores_text.replace("\n", ",").split(",") if c.strip()]
    values: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "scopes": chosen,
        "programs": reach,
        "stores": stores_text,
    }
    errors = forms.required(values, ("name",), lang)
    if not chosen:
        errors["scopes"] = i18n.translate("staff.keys.error.scopes", lang)
    if stores and not reach:
        errors["stores"] = i18n.translate("staff.keys.error.stores", lang)
    if not service.within(staff.programs, reach or None):
        # A manager limited to programs makes keys for programs of theirs only.
        errors["programs"] = i18n.translate("staff.reach.error.key", lang)
    body = None
    if not errors:
        try:
            body = KeyCreate.model_validate(
                {
                    "name": values["name"],
                    "scopes": chosen,
                    "programs": reach or None,
                    "stores": stores or None,
                }
            )
        except ValidationError as exc:
            errors = forms.from_validation(exc, lang, ("name", "scopes", "programs", "stores"))
    if body is None:
        return _keys_page(request, staff, values=values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            row, raw = keys.create_key(
                session,
                name=body.name,
                scopes=body.scopes,
                programs=body.programs,
                stores=body.stores,
                actor=staff.actor,
                now=clock.now(),
            )
            key_id, name, scopes = row.id, row.name, list(row.scopes)
    except PatronError as exc:
        errors = _errors(exc, lang, ("name", "scopes"))
        if exc.code == "invalid_scope":
            errors = {"scopes": i18n.translate("staff.keys.error.scopes", lang)}
        elif exc.code == "store_not_found":
            errors = {"stores": exc.detail}
        return _keys_page(request, staff, values=values, errors=errors, status=422)
    api_root = f"{request.url.scheme}://{request.url.netloc}/api/v1"
    return render(
        request,
        "staff/key_created.html",
        section="staff",
        key_id=key_id,
        name=name,
        scopes=scopes,
        raw_key=raw,
        api_root=api_root,
    )


@router.get("/staff/keys/{key_id}/revoke", name="apikey_revoke_confirm")
def apikey_revoke_confirm(
    request: Request, key_id: int = KeyId, staff: Staff = Depends(require("apikeys.manage"))
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        row = next((k for k in keys.list_keys(session) if k.id == key_id), None)
        if row is None or not service.within(staff.programs, row.programs):
            raise NotFound(f"no API key {key_id}", code="api_key_not_found")
        return render(
            request,
            "staff/key_revoke.html",
            tz=context.default_timezone(session),
            section="staff",
            key=row,
        )


@router.post("/staff/keys/{key_id}/revoke", name="apikey_revoke")
def apikey_revoke(
    request: Request, key_id: int = KeyId, staff: Staff = Depends(require("apikeys.manage"))
) -> Response:
    with get_db(request).unit_of_work() as session:
        row = next((k for k in keys.list_keys(session) if k.id == key_id), None)
        if row is not None and not service.within(staff.programs, row.programs):
            raise NotFound(f"no API key {key_id}", code="api_key_not_found")
        keys.revoke_key(session, key_id, actor=staff.actor, now=clock.now())
    # The API remembers good keys; this worker forgets them now (as the API's own revoke
    # does), others at their next revocation check (within http.REVOCATION_CHECK seconds).
    http.forget_keys()
    return RedirectResponse(path_for(request, "apikeys_list", {"done": "revoked"}), status_code=303)
