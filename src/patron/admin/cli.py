"""`patron user …`: staff accounts for the admin UI (the first owner comes from here)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

app: typer.Typer = typer.Typer(
    help="Staff users of the admin UI: create, update, list, set-password, unlock.",
    no_args_is_help=True,
)


Email = Annotated[str, typer.Option("--email", help="Sign-in e-mail address")]
PasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--password",
        help="The password (10+ characters). Leave out to be asked for it, "
        "or use --generate for a random one",
    ),
]
Generate = Annotated[
    bool, typer.Option("--generate", help="Make a random password and print it once")
]
Programs = Annotated[
    list[str] | None,
    typer.Option(
        "--program",
        help="Limit the user to this program (code); repeat for several. "
        "Leave out for every program",
    ),
]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _password(password: str | None, generate: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated (then it is printed)."""
    from patron.admin.service import generate_password

    if password is not None and generate:
        raise _fail("invalid_options", "give --password or --generate, not both")
    if password is not None:
        return password, False
    if generate:
        return generate_password(), True
    asked: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return asked, False


@app.command("create")
def create(
    email: Email,
    role: Annotated[str, typer.Option("--role", help="owner, marketer, support or viewer")],
    name: Annotated[str, typer.Option("--name", help="The name shown in the UI")],
    password: PasswordOpt = None,
    generate: Generate = False,
    language: Annotated[str, typer.Option("--language", help="en, ko or zh")] = "en",
    program: Programs = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a staff user (the first owner starts here)."""
    from patron import clock
    from patron.admin import service
    from patron.audit.service import CLI
    from patron.errors import PatronError

    secret, generated = _password(password, generate)
    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            user = service.create_user(
                session,
                email=email,
                name=name,
                role=role,
                password=secret,
                language=language,
                actor=CLI,
                now=clock.now(),
                programs=program or None,
            )
            user_id, address, reach = user.id, user.email, user.programs
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(f"staff user {user_id} created: {address} ({role})")
    if reach is not None:
        typer.echo(f"limited to {_reach_text(reach)}")
    if generated:
        typer.echo(f"password: {secret}")
        typer.echo("Store it now: it is not shown again.")


def _reach_text(programs: list[str] | None) -> str:
    return "all programs" if programs is None else "programs " + ", ".join(programs)


@app.command("update")
def update(
    email: Email,
    program: Programs = None,
    all_programs: Annotated[
        bool, typer.Option("--all-programs", help="Let the user reach every program")
    ] = False,
    role: Annotated[
        str | None, typer.Option("--role", help="owner, marketer, support or viewer")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The name shown in the UI")] = None,
    language: Annotated[str | None, typer.Option("--language", help="en, ko or zh")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change a user's programs (--program, repeatable, or --all-programs), role, name or
    language. A change applies at their next request in the admin UI."""
    from patron import clock
    from patron.admin import service, setup_service
    from patron.audit.service import CLI
    from patron.errors import PatronError

    if program and all_programs:
        raise _fail("invalid_options", "give --program or --all-programs, not both")
    db = open_database(database_url)
    now = clock.now()
    try:
        with db.unit_of_work() as session:
            user = service.find_user(session, email)
            if program or all_programs:
                service.set_programs(
                    session,
                    user,
                    None if all_programs else program,
                    actor=CLI,
                    granter=None,
                    now=now,
                )
            if role is not None or name is not None or language is not None:
                setup_service.update_user(
                    session,
                    user,
                    name=user.name if name is None else name,
                    role=user.role if role is None else role,
                    language=user.language if language is None else language,
                    actor=CLI,
                    now=now,
                )
            address, shown = user.email, f"{user.role}, {_reach_text(user.programs)}"
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(f"{address} updated: {shown}")


@app.command("list")
def list_users(database_url: DatabaseUrl = None) -> None:
    """List staff users (never their passwords)."""
    from patron import clock
    from patron.admin import service

    db = open_database(database_url)
    now = clock.now()
    table = Table("id")
    table.add_column("e-mail", no_wrap=True)  # an address is copied from here: never wrapped
    for heading in ("name", "role", "programs", "language", "last sign-in", "state"):
        table.add_column(heading)
    with db.unit_of_work(readonly=True) as session:
        for user in service.list_users(session):
            locked = user.locked_until is not None and user.locked_until > now
            state = (
                "inactive"
                if not user.active
                else f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
                if locked and user.locked_until
                else "active"
            )
            table.add_row(
                str(user.id),
                user.email,
                user.name,
                user.role,
                "all" if user.programs is None else ", ".join(user.programs),
                user.language,
                f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never",
                state,
            )
    console.print(table)


@app.command("set-password")
def set_password(
    email: Email,
    password: PasswordOpt = None,
    generate: Generate = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a user's password; their sessions end and any lock-out is lifted."""
    from patron import clock
    from patron.admin import service
    from patron.audit.service import CLI
    from patron.errors import PatronError

    secret, generated = _password(password, generate)
    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            user = service.find_user(session, email)
            service.set_password(session, user, password=secret, actor=CLI, now=clock.now())
            address = user.email
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(f"password set for {address}; their sessions have ended")
    if generated:
        typer.echo(f"password: {secret}")


@app.command("unlock")
def unlock(email: Email, database_url: DatabaseUrl = None) -> None:
    """Lift a lock-out after too many wrong passwords, before it runs out."""
    from patron import clock
    from patron.admin import service
    from patron.audit.service import CLI
    from patron.errors import PatronError

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            user = service.find_user(session, email)
            was_locked = service.unlock(session, user, actor=CLI, now=clock.now())
            address = user.email
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(f"{address} unlocked" if was_locked else f"{address} was not locked")
