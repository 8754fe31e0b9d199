"""`patron backup` and `patron restore`: one consistent copy of the database, a manifest that says
what the copy holds, and a restore that proves the copy came back whole.

A backup is taken while the server keeps writing:

- SQLite: the online backup API in a single step, i.e. inside one read transaction. In WAL mode
  writers carry on meanwhile and the copy is that transaction's snapshot, commits still in the
  `-wal` file included. (A stepwise backup restarts whenever another connection writes, so under
  steady traffic it might never finish.)
- PostgreSQL: `pg_dump --format=custom --snapshot=…` on a snapshot this module exports from a
  REPEATABLE READ transaction, so the manifest's totals and the dump are the same instant.

The manifest (`<backup>.manifest.json`) records the engine, the Alembic revision, per-program
ledger totals, row counts per table, the checker's verdict and the file's SHA-256. `restore` loads
the copy into an empty database, runs the checker and compares the totals with the manifest.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, case, create_engine, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from patron.db.engine import normalise_url
from patron.errors import PatronError

MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"

Progress = Callable[[str], None]


class BackupError(PatronError):
    """Bad input or a missing tool: the CLI prints it and exits 2."""

    code = "backup_failed"


@dataclass
class Manifest:
    engine: str
    alembic_revision: str | None
    created_at: str
    file: str
    size: int
    sha256: str
    # The checker on the backed-up snapshot: None when it could not run (an older schema).
    check_ok: bool | None
    violations: list[str]
    # program code -> figure -> integer (accounts, entries, points by kind, cached totals …)
    programs: dict[str, dict[str, int]]
    tables: dict[str, int]
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise BackupError(
                    f"{path} has manifest format {data.get('format')!r}; this Patron reads {FORMAT}",
                    code="bad_manifest",
                )
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise BackupError(
                f"{path} is not a Patron backup manifest ({exc})", code="bad_manifest"
            ) from None


@dataclass
class RestoreResult:
    manifest: Manifest
    engine: str
    alembic_revision: str | None
    migrated_from: str | None
    check_ok: bool
    violations: list[str]
    programs: dict[str, dict[str, int]]
    tables: dict[str, int]
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.check_ok and not self.differences


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def engine_of(url: str) -> str:
    try:
        backend = make_url(normalise_url(url)).get_backend_name()
    except Exception as exc:
        raise BackupError(f"not a database URL: {url!r} ({exc})", code="bad_url") from None
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(
            f"backup and restore support SQLite and PostgreSQL, not {backend}", code="wrong_engine"
        )
    return backend


def redact(url: str) -> str:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


# --- what a database holds ----------------------------------------------------------------


def program_totals(session: Session) -> dict[str, dict[str, int]]:
    """Per program: accounts, entries and purchases counted, points summed by entry kind, the
    cached account totals and what the lots still hold. Integers only, so JSON compares them
    exactly."""
    from patron.ledger.models import Account, Entry, Lot, Purchase
    from patron.programs.models import Program

    codes = {
        program_id: code for program_id, code in session.execute(select(Program.id, Program.code))
    }
    out: dict[str, dict[str, int]] = {code: {} for code in codes.values()}

    def put(rows: Any, names: list[str]) -> None:
        for program_id, *values in rows:
            figures = out.setdefault(codes.get(program_id, f"#{program_id}"), {})
            figures.update(
                {name: int(value or 0) for name, value in zip(names, values, strict=True)}
            )

    kinds = ["earn", "redeem", "expire", "adjust", "reverse"]
    put(
        session.execute(
            select(
                Entry.program_id,
                func.count(),
                func.sum(Entry.points),
                *(func.sum(case((Entry.kind == k, Entry.points), else_=0)) for k in kinds),
            ).group_by(Entry.program_id)
        ),
        ["entries", "points_net", *(f"points_{k}" for k in kinds)],
    )
    cached = ["available", "pending", "debt", "earned", "redeemed", "expired", "adjusted"]
    put(
        session.execute(
            select(
                Account.program_id,
                func.count(),
                *(func.sum(getattr(Account, name)) for name in cached),
            ).group_by(Account.program_id)
        ),
        ["accounts", *cached],
    )
    put(
        session.execute(
            select(Account.program_id, func.count(), func.sum(Lot.remaining))
            .join(Account, Account.id == Lot.account_id)
            .group_by(Account.program_id)
        ),
        ["lots", "lots_remaining"],
    )
    put(
        session.execute(
            select(Purchase.program_id, func.count(), func.sum(Purchase.amount_minor)).group_by(
                Purchase.program_id
            )
        ),
        ["purchases", "purchases_amount_minor"],
    )
    return out


def table_counts(conn: Connection) -> dict[str, int]:
    quote = conn.dialect.identifier_preparer.quote
    return {
        name: int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one())
        for name in sorted(inspect(conn).get_table_names())
    }


def alembic_revision(conn: Connection) -> str | None:
    if "alembic_version" not in inspect(conn).get_table_names():
        return None
    # Several rows while migrations branch: all of them, sorted, comma-separated.
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
    return ",".join(sorted(str(row) for row in rows)) or None


def _script(url: str) -> Any:
    from alembic.script import ScriptDirectory

    from patron.db.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config(url))


def head_revision(url: str) -> str | None:
    return ",".join(sorted(_script(url).get_heads())) or None


def _known_revision(url: str, revision: str | None) -> bool:
    if revision is None:
        return True
    script = _script(url)
    try:
        return all(script.get_revision(one) is not None for one in revision.split(","))
    except Exception:
        return False


@dataclass
class _Snapshot:
    revision: str | None
    check_ok: bool | None
    violations: list[str]
    programs: dict[str, dict[str, int]]
    tables: dict[str, int]


def _read_snapshot(conn: Connection, head: str | None) -> _Snapshot:
    """Everything the manifest says about the data, read on one connection (one snapshot)."""
    from patron.check import run_check

    revision = alembic_revision(conn)
    tables = table_counts(conn)
    postgresql = conn.dialect.name == "postgresql"
    # PostgreSQL: the session works in a savepoint, so a failed query leaves the snapshot's
    # transaction usable for pg_dump.
    session = Session(
        bind=conn,
        join_transaction_mode="create_savepoint" if postgresql else "conditional_savepoint",
    )
    programs = program_totals(session) if "programs" in tables else {}
    check_ok: bool | None = None
    violations: list[str] = []
    # The checker reads today's models; on an older schema it cannot run (the totals can).
    if revision == head:
        try:
            report = run_check(session)
        except DBAPIError as exc:
            # The checker share-locks the report watermark; in a REPEATABLE READ snapshot that
            # fails if a roll-up moved it meanwhile. The backup stands; restore checks anyway.
            session.rollback()
            violations = [f"checker not run on the snapshot: {str(exc.orig or exc).strip()}"]
        else:
            check_ok, violations = report.ok, list(report.violations)
    session.close()
    return _Snapshot(revision, check_ok, violations, programs, tables)


# --- files --------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _magic(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(16)


def _sqlite_file(url: str) -> Path:
    database = make_url(normalise_url(url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"{url!r} names no SQLite file", code="bad_url")
    return Path(database)


def _new_output(to: Path) -> Path:
    if to.exists() or manifest_path(to).exists():
        raise BackupError(
            f"{to} (or its manifest) already exists; choose a new name, e.g. with the date in it",
            code="backup_exists",
        )
    if not to.parent.is_dir():
        raise BackupError(f"directory {to.parent} does not exist", code="no_directory")
    return to.with_name(to.name + ".partial")


def _finish(partial: Path, to: Path, engine: str, snap: _Snapshot) -> Manifest:
    manifest = Manifest(
        engine=engine,
        alembic_revision=snap.revision,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        file=to.name,
        size=partial.stat().st_size,
        sha256=_sha256(partial),
        check_ok=snap.check_ok,
        violations=snap.violations,
        programs=snap.programs,
        tables=snap.tables,
    )
    # The manifest first, the backup last: a backup file with that name is always complete.
    target = manifest_path(to)
    tmp = target.with_name(target.name + ".partial")
    tmp.write_text(manifest.to_json())
    tmp.replace(target)
    partial.replace(to)
    return manifest


# --- PostgreSQL tools ---------------------------------------------------------------------


def find_pg_tool(name: str) -> str:
    """`name` on PATH, else the newest /usr/lib/postgresql/<version>/bin/<name> (Debian)."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    if candidates:
        return candidates[-1]
    raise BackupError(
        f"{name} was not found on PATH nor in /usr/lib/postgresql/*/bin; install the PostgreSQL "
        "client tools (e.g. apt install postgresql-client), the same major version as the server "
        "or newer",
        code="tool_missing",
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL for libpq (no driver, no password) and the environment carrying the password, so
    it never shows in the process list."""
    parsed: URL = make_url(normalise_url(url))
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"could not run {args[0]}: {exc}", code="tool_missing") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise BackupError(f"{what} failed (exit {done.returncode}):\n{tail}", code="tool_failed")


@contextmanager
def _pg_connection(url: str, hint: str = "", **options: Any) -> Iterator[Connection]:
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        try:
            conn = engine.connect().execution_options(**options)
        except DBAPIError as exc:
            raise BackupError(
                f"cannot connect to {redact(url)}: {str(exc.orig or exc).strip()}{hint}",
                code="cannot_connect",
            ) from None
        with conn:
            yield conn
    finally:
        engine.dispose()


# --- backup -------------------------------------------------------------------------------


def backup(url: str, to: Path, *, progress: Progress = lambda _: None) -> Manifest:
    engine = engine_of(url)
    partial = _new_output(to)
    head = head_revision(url)
    try:
        if engine == "sqlite":
            snap = _backup_sqlite(url, partial, head, progress)
        else:
            snap = _backup_postgresql(url, partial, head, progress)
        progress("writing the manifest")
        return _finish(partial, to, engine, snap)
    finally:
        partial.unlink(missing_ok=True)


def _backup_sqlite(url: str, partial: Path, head: str | None, progress: Progress) -> _Snapshot:
    source = _sqlite_file(url)
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}", code="not_found")
    if _magic(source) != SQLITE_MAGIC:
        raise BackupError(f"{source} is not a SQLite database", code="wrong_engine")
    progress(f"copying {source.name} with SQLite's online backup")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        # pages=-1: the whole copy in one step, one read transaction, one snapshot.
        src.backup(dst, pages=-1)
        # One self-contained file: no -wal beside the backup.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    progress("reading the backup's totals and running the checker on it")
    # Read from the copy, so the manifest describes exactly what was copied.
    copy = create_engine(f"sqlite:///{partial}", poolclass=NullPool)
    try:
        with copy.connect() as conn:
            return _read_snapshot(conn, head)
    finally:
        copy.dispose()


def _backup_postgresql(url: str, partial: Path, head: str | None, progress: Progress) -> _Snapshot:
    pg_dump = find_pg_tool("pg_dump")
    libpq_url, env = _libpq(url)
    with _pg_connection(url, isolation_level="REPEATABLE READ") as conn:
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        progress("reading totals and running the checker on the snapshot")
        snap = _read_snapshot(conn, head)
        progress("pg_dump --format=custom on the same snapshot")
        # The exporting transaction stays open until pg_dump is done with the snapshot.
        _run_tool(
            [
                pg_dump,
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={partial}",
                f"--dbname={libpq_url}",
            ],
            env,
            "pg_dump",
        )
        conn.rollback()
    return snap


# --- restore ------------------------------------------------------------------------------


def _backup_engine(source: Path) -> str:
    magic = _magic(source)
    if magic == SQLITE_MAGIC:
        return "sqlite"
    if magic.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise BackupError(
        f"{source} is neither a SQLite backup nor a pg_dump custom-format archive",
        code="wrong_engine",
    )


def restore(
    source: Path, url: str, *, force: bool = False, progress: Progress = lambda _: None
) -> RestoreResult:
    if not source.is_file():
        raise BackupError(f"no backup file at {source}", code="not_found")
    mpath = manifest_path(source)
    if not mpath.is_file():
        raise BackupError(
            f"no manifest beside the backup (expected {mpath}); restore verifies against it",
            code="not_found",
        )
    manifest = Manifest.read(mpath)
    engine = engine_of(url)
    found = _backup_engine(source)
    if manifest.engine != found:
        raise BackupError(
            f"the manifest says {manifest.engine} but {source} is a {found} backup",
            code="bad_manifest",
        )
    if found != engine:
        raise BackupError(
            f"{source} is a {found} backup and the target is {engine}: a backup restores "
            "only into the engine it was taken from",
            code="wrong_engine",
        )
    if not _known_revision(url, manifest.alembic_revision):
        raise BackupError(
            f"the backup's schema revision {manifest.alembic_revision} is unknown to this Patron "
            "(a newer version made it); restore it with that version",
            code="newer_schema",
        )
    progress("checking the backup against its manifest (SHA-256)")
    if source.stat().st_size != manifest.size or _sha256(source) != manifest.sha256:
        raise BackupError(
            f"{source} does not match its manifest (size or SHA-256 differ): damaged or replaced",
            code="bad_manifest",
        )
    if engine == "sqlite":
        _restore_sqlite(source, url, force, progress)
    else:
        _restore_postgresql(source, url, force, progress)
    return _verify(url, manifest, progress)


def _refuse_non_empty(where: str, tables: list[str]) -> None:
    shown = ", ".join(tables[:5]) + (" …" if len(tables) > 5 else "")
    raise BackupError(
        f"{where} is not empty ({len(tables)} tables: {shown}); restore into a new, empty "
        "database, or pass --force to replace what is there",
        code="target_not_empty",
    )


def _restore_sqlite(source: Path, url: str, force: bool, progress: Progress) -> None:
    target = _sqlite_file(url)
    if not target.parent.is_dir():
        raise BackupError(f"directory {target.parent} does not exist", code="no_directory")
    if target.exists() and target.stat().st_size > 0:
        if _magic(target) != SQLITE_MAGIC:
            raise BackupError(f"{target} exists and is not a SQLite database", code="wrong_engine")
        with sqlite3.connect(target) as probe:
            tables = [
                row[0]
                for row in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
                )
            ]
        probe.close()
        if tables and not force:
            _refuse_non_empty(str(target), tables)
    progress(f"copying the backup into {target} with SQLite's backup API")
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=WAL")  # as Patron runs it
    finally:
        dst.close()
        src.close()


def _restore_postgresql(source: Path, url: str, force: bool, progress: Progress) -> None:
    pg_restore = find_pg_tool("pg_restore")
    hint = " (restore needs an existing, empty database: create it first, e.g. with createdb)"
    with _pg_connection(url, hint) as conn:
        tables = [
            str(name)
            for name in conn.execute(
                text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
                )
            ).scalars()
        ]
    if tables and not force:
        _refuse_non_empty(redact(url), tables)
    progress("pg_restore into the target (one transaction)")
    libpq_url, env = _libpq(url)
    _run_tool(
        [
            pg_restore,
            "--no-owner",
            "--no-privileges",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={libpq_url}",
            str(source),
        ],
        env,
        "pg_restore",
    )


def _verify(url: str, manifest: Manifest, progress: Progress) -> RestoreResult:
    from patron.db.migrate import upgrade

    head = head_revision(url)
    migrated_from: str | None = None
    if manifest.alembic_revision != head:
        # Every patron command migrates first; do it now so the checker reads today's schema.
        progress(f"migrating the restored schema from {manifest.alembic_revision} to {head}")
        upgrade(url)
        migrated_from = manifest.alembic_revision or "(empty)"
    progress("running the checker and comparing totals with the manifest")
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            snap = _read_snapshot(conn, head)
    finally:
        engine.dispose()
    result = RestoreResult(
        manifest=manifest,
        engine=engine_of(url),
        alembic_revision=snap.revision,
        migrated_from=migrated_from,
        check_ok=bool(snap.check_ok),
        violations=snap.violations,
        programs=snap.programs,
        tables=snap.tables,
    )
    result.differences = compare(manifest, snap.programs, snap.tables)
    return result


def compare(
    manifest: Manifest, programs: dict[str, dict[str, int]], tables: dict[str, int]
) -> list[str]:
    """Every figure of the manifest that the restored database does not reproduce."""
    out: list[str] = []
    for code in sorted(set(manifest.programs) | set(programs)):
        want, got = manifest.programs.get(code), programs.get(code)
        if want is None or got is None:
            out.append(f"program {code}: {'missing' if got is None else 'not in the backup'}")
            continue
        for name in sorted(set(want) | set(got)):
            if want.get(name) != got.get(name):
                out.append(
                    f"program {code} {name}: backup {want.get(name)}, restored {got.get(name)}"
                )
    # Tables a later migration added may hold rows the backup never had: only the backup's count.
    for name, count in sorted(manifest.tables.items()):
        if name == "alembic_version":
            continue
        if tables.get(name) != count:
            out.append(f"table {name}: backup {count} rows, restored {tables.get(name)}")
    return out
