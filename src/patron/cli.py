"""The `patron` command: serve, db, demo, apikey, expire, check."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from patron import clock
from patron.admin.cli import app as user_app
from patron.audit_cli import app as audit_app
from patron.backup_cli import app as backup_app
from patron.bulk.cli import register as register_bulk
from patron.campaigns.cli import app as campaigns_app
from patron.cli_common import DatabaseUrl, console, open_database, parse_as_of, resolve_url
from patron.config import get_settings
from patron.conformance.cli import conformance as conformance_command
from patron.earning.cli import app as rules_app
from patron.earning.examples_cli import test as rules_test
from patron.fraud.cli import app as fraud_app
from patron.milestones.cli import app as milestones_app
from patron.moves.cli import members_app, points_app
from patron.notify.cli import notify_app
from patron.privacy.cli import app as privacy_app
from patron.reports.cli import app as report_app
from patron.review import cli as review_cli
from patron.sales.import_cli import app as import_app
from patron.segments.cli import app as segments_app
from patron.surveys.cli import app as surveys_app
from patron.tiers.cli import app as tiers_app

app = typer.Typer(help="Patron: an API-first customer loyalty engine.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(key_app, name="apikey")
rules_app.command("test")(rules_test)
app.add_typer(rules_app, name="rules")
app.add_typer(tiers_app, name="tiers")
register_bulk(import_app)  # patron import members | adjustments | jobs | errors
app.add_typer(import_app, name="import")
app.add_typer(user_app, name="user")
app.add_typer(report_app, name="report")
app.add_typer(notify_app, name="notify")
app.add_typer(audit_app, name="audit")
fraud_app.command("queue")(review_cli.queue)  # the review queue: patron.review
fraud_app.command("decide")(review_cli.decide)
app.add_typer(fraud_app, name="fraud")
app.add_typer(members_app, name="members")
app.add_typer(points_app, name="points")
app.add_typer(privacy_app, name="privacy")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(segments_app, name="segments")
app.add_typer(surveys_app, name="surveys")
app.add_typer(milestones_app, name="milestones")
app.add_typer(backup_app)  # top-level commands: patron backup, patron restore
app.command("conformance")(conformance_command)  # docs/conformance.md


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply every migration to the database."""
    from patron.db.migrate import upgrade

    url = resolve_url(database_url)
    upgrade(url)
    console.print(f"[green]schema up to date[/] on {url.split('@')[-1]}")


def _load_demo(db, members: int, days: int, *, host: str, port: int) -> None:
    """Load the demo and print where to look; `host` and `port` are where the server listens
    (a wildcard address is shown as loopback)."""
    from patron import demo

    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"

    with db.unit_of_work(readonly=True) as session:
        if not demo.is_empty(session):
            console.print("[yellow]the database already has a program; demo not loaded[/]")
            return
    with console.status("loading the corner-bakery demo (members and a year of sales)…"):
        result = demo.load(db, now=clock.now(), members_count=members, days=days)
    console.print(
        f"[green]demo loaded[/]: program [bold]bakery[/], {result.members} members, "
        f"{result.purchases} purchases, {result.refunds} refunds"
    )
    console.print(f"  admin API key: [bold]{result.admin_key}[/]")
    console.print(f"  POS API key:   [bold]{result.pos_key}[/] (bakery only)")
    console.print(
        f"  walk-through member: 김민지, phone {demo.WALKTHROUGH_PHONE}, "
        f"e-mail {demo.WALKTHROUGH_EMAIL}, card BKR100000"
    )
    settings = get_settings()
    where = (
        f"written to {Path(settings.message_log).resolve()}"
        if settings.email_channel == "log"
        else f"sent by SMTP to {settings.smtp_host}:{settings.smtp_port}"
    )
    console.print(
        f"  messages to members (e-mail): {where}; webhooks and the delivery log: /admin/deliveries"
    )
    console.print(
        "  try the expiring-points reminder: .venv/bin/patron notify expiring --program bakery"
    )
    console.print(f"  member page: [bold]{base}/m/bakery[/]")
    console.print(f"  김민지's sign-in codes ({demo.WALKTHROUGH_EMAIL}) land in the message log")
    console.print(
        f"  join as a new member: {base}/m/bakery/join (the code lands there too); "
        "install the page on a phone to keep the card offline"
    )
    console.print(
        "  rule tests (sales the rules must price as written): "
        ".venv/bin/patron rules test --program bakery"
    )
    console.print("  rewards: /api/v1/programs/bakery/rewards and /admin/rewards")
    console.print(
        "  fraud review: one large sale held for review at /admin/fraud (confirm or reverse it)"
    )
    console.print(
        "  privacy: 김민지's data as a ZIP: .venv/bin/patron privacy export BKR100000 "
        "--to minji.zip; erasure requests and legal holds at /admin/privacy"
    )
    console.print(
        "  duplicates and gifts: merge a member or transfer points from the member's page "
        "(transfers allowed in the bakery: /admin/program/transfers)"
    )
    console.print(
        "  migrating members in: .venv/bin/patron import members FILE.csv --program bakery "
        "--dry-run; jobs at /admin/jobs"
    )
    console.print(
        "  segments: 'gold members dormant 60 days' at /admin/segments (.venv/bin/patron "
        "segments count gold-dormant --program bakery)"
    )
    if days >= demo.CAMPAIGN_MIN_DAYS:
        console.print(
            f"  campaigns: 'winback-ab' on gold-dormant ({demo.LAPSED_MEMBERS} lapsed members), "
            "coupon vs bonus points 50/50 with a 10 % holdout, launched 6 weeks ago: results at "
            "/admin/campaigns (.venv/bin/patron campaigns results winback-ab --program bakery)"
        )
    console.print(
        "  surveys: 'after-visit' invites a member after a sale (link in the message log, "
        "100 points for answering); results at /admin/surveys"
    )
    console.print(
        "  milestones: badges 'regular', 'six-in-a-row', 'big-fan' at /admin/milestones "
        "(achievers per goal), on the member page (/m/bakery/) and "
        "/api/v1/programs/bakery/members/ID/milestones; .venv/bin/patron milestones run "
        "--program bakery"
    )
    console.print(
        "  at the counter: /admin/members/new enrols with a card and checks for duplicates "
        "(welcome sheet to print or e-mail); on any admin page '/' jumps to member search, and a "
        "scanned card, a whole phone number or #id opens the member"
    )
    console.print(
        "  operations: /health, /ready, /metrics; conformance: .venv/bin/patron conformance "
        f"--url {base} --admin-key ADMIN_KEY"
    )
    if result.coupon:
        console.print(
            f"  김민지's americano coupon [bold]{result.coupon}[/] (use it at the till: POST "
            f"/api/v1/programs/bakery/coupons/{result.coupon}/use)"
        )
    console.print("  admin UI sign-in (/admin), printed once:")
    for role, email, password in result.staff:
        console.print(f"    {role:<9} {email:<22} [bold]{password}[/]")


@app.command()
def demo(
    database_url: DatabaseUrl = None,
    # At least three: the walk-through member, a coupon holder and the sale held for review.
    members: Annotated[int, typer.Option(min=3, max=100_000)] = 150,
    days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
) -> None:
    """Load the corner-bakery program with members and a year of purchases (empty database only)."""
    settings = get_settings()
    _load_demo(open_database(database_url), members, days, host=settings.host, port=settings.port)


@app.command()
def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str | None, typer.Option(help="default PATRON_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default PATRON_PORT or 8000")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64)] = None,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo on an empty database")
    ] = False,
    log_format: Annotated[
        str | None, typer.Option(help="text or json; default PATRON_LOG_FORMAT or text")
    ] = None,
) -> None:
    """Run the HTTP API (migrations are applied first)."""
    import uvicorn

    from patron.ops import logging as ops_logging
    from patron.ops.metrics import prepare_multiprocess

    log_format = log_format or get_settings().log_format
    if log_format not in ops_logging.FORMATS:
        raise typer.BadParameter("must be text or json", param_hint="--log-format")

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    db = open_database(database_url)
    if with_demo:
        _load_demo(db, 150, 365, host=host, port=port)
    db.dispose()
    if settings.delivery_in_process:
        console.print(
            "  messages and webhooks are delivered by this server "
            f"(e-mail: {settings.email_channel}, SMS: {settings.sms_channel}"
            + (
                f", written to {settings.message_log}"
                if "log" in (settings.email_channel, settings.sms_channel)
                else ""
            )
            + ")"
        )
    console.print(
        f"Patron on http://{host}:{port}  (docs: /docs, admin UI: /admin)  database: "
        f"{settings.resolved_database_url.split('@')[-1]}"
    )
    if settings.metrics:  # several workers count in one shared directory (docs/operations.md)
        prepare_multiprocess(workers or settings.workers)
    uvicorn.run(
        "patron.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
        log_level=settings.log_level,
        log_config=ops_logging.log_config(log_format, settings.log_level),
        # A worker gets this long to start and to answer the supervisor's pings (uvicorn's 5 s
        # restarted every worker in a loop on a busy 2-core machine).
        timeout_worker_healthcheck=30,
    )


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then stop")
    ] = False,
    jobs: Annotated[
        bool, typer.Option(help="Also start the scheduled jobs (reminders, birthdays, statements)")
    ] = True,
) -> None:
    """Deliver the outbox: webhooks, e-mail and SMS, with retries; start the scheduled jobs.
    Run as many as you like against PostgreSQL: they share the work."""
    from patron.delivery.worker import DeliveryLoop

    loop = DeliveryLoop(open_database(database_url), jobs=jobs)
    if once:
        done = loop.drain()
        console.print(
            f"events dispatched: {done.events}, deliveries tried: {done.sent}, jobs run: {done.jobs}"
        )
        return
    console.print("[green]delivering[/] (Ctrl-C stops)")
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        console.print("stopped")


@key_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who uses it, e.g. 'till 3'")],
    scope: Annotated[list[str], typer.Option(help="pos, read or admin; repeat for several")],
    program: Annotated[
        list[str] | None,
        typer.Option(help="Limit the key to this program (code); repeat for several"),
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option(help="Limit its sales to this store (code); repeat for several"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key; the key is printed once. Without --program it reaches every
    program of the deployment."""
    from patron.audit.service import CLI
    from patron.auth.service import create_key
    from patron.errors import PatronError

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            row, key = create_key(
                session,
                name=name,
                scopes=scope,
                programs=program or None,
                stores=store or None,
                actor=CLI,
                now=clock.now(),
            )
    except PatronError as exc:
        console.print(f"[red]{exc.code}[/]: {exc.detail}")
        raise typer.Exit(2) from None
    reach = ", ".join(row.programs) if row.programs is not None else "every program"
    if row.stores is not None:
        reach += f"; stores {', '.join(row.stores)}"
    console.print(f"API key {row.id} ({', '.join(row.scopes)}; {reach}): [bold]{key}[/]")
    console.print("Store it now: it is not shown again.")


@key_app.command("list")
def apikey_list(database_url: DatabaseUrl = None) -> None:
    """List API keys (never their secrets)."""
    from patron.auth.service import list_keys

    db = open_database(database_url)
    table = Table("id", "name", "prefix", "scopes", "programs", "stores", "created", "revoked")
    with db.unit_of_work(readonly=True) as session:
        for row in list_keys(session):
            table.add_row(
                str(row.id),
                row.name,
                row.prefix,
                ", ".join(row.scopes),
                ", ".join(row.programs) if row.programs is not None else "[yellow]all[/]",
                ", ".join(row.stores) if row.stores is not None else "all",
                f"{row.created_at:%Y-%m-%d %H:%M}",
                f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "",
            )
    console.print(table)


@key_app.command("revoke")
def apikey_revoke(key_id: int, database_url: DatabaseUrl = None) -> None:
    """Revoke an API key."""
    from patron.audit.service import CLI
    from patron.auth.service import revoke_key
    from patron.errors import PatronError

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            revoke_key(session, key_id, actor=CLI, now=clock.now())
    except PatronError as exc:
        console.print(f"[red]{exc.code}[/]: {exc.detail}")
        raise typer.Exit(2) from None
    console.print(f"API key {key_id} revoked")


@app.command()
def expire(
    database_url: DatabaseUrl = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; change nothing")] = False,
    as_of: Annotated[
        str | None, typer.Option(help="Expire as of this ISO datetime (default now)")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=1_000_000)] = None,
) -> None:
    """Expire every lot past its date, in bounded batches; release matured pending points;
    expire unused coupons past their date."""
    from patron.ledger.jobs import run_expiry

    db = open_database(database_url)
    at = parse_as_of(as_of)
    if at > clock.now() and not dry_run:
        console.print(
            "[red]--as-of is in the future[/]: that would expire points before their "
            "date; use --dry-run to preview a future run"
        )
        raise typer.Exit(2)
    settings = get_settings()
    report = run_expiry(
        db,
        at,
        dry_run=dry_run,
        batch_size=batch_size or settings.job_batch_size,
        actor="cli",
        idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
    )
    verb = "would expire" if dry_run else "expired"
    console.print(
        f"{verb} {report.points} points in {report.lots} lots "
        f"({report.accounts} accounts); pending released: {report.released_points} points "
        f"in {report.released_lots} lots; idempotency answers dropped: "
        f"{report.idempotency_keys_purged}"
    )
    if report.rolled_lots:
        kept = "would keep" if dry_run else "kept"
        console.print(
            f"rolling expiry: {kept} {report.rolled_lots} lots of {report.rolled_accounts} "
            "active accounts (moved to N after their latest activity)"
        )
    from patron.audit.service import CLI
    from patron.rewards import jobs as reward_jobs

    if dry_run:
        with db.unit_of_work(readonly=True) as session:
            due = reward_jobs.preview(session, at)
        console.print(f"would expire {due} unused coupons")
    else:
        coupons = reward_jobs.expire_coupons(db, at, batch_size=batch_size or 1000, actor=CLI)
        console.print(
            f"expired {coupons.coupons} unused coupons; {coupons.refunded} of them gave back "
            f"{coupons.points_returned} points"
        )


@app.command()
def check(database_url: DatabaseUrl = None) -> None:
    """Verify every ledger invariant; exits 1 on any violation."""
    from patron.check import run_check

    db = open_database(database_url)
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    if report.ok:
        console.print(
            f"[green]ledger consistent[/]: {report.accounts} accounts, "
            f"{report.entries} entries, {report.lots} lots"
        )
        return
    console.print(f"[red]{len(report.violations)} violation(s)[/]:")
    for line in report.violations:
        console.print(f"  {line}")
    raise typer.Exit(1)


def main() -> None:
    app()
