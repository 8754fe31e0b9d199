"""/ready on both engines: ready, schema behind the migrations, outbox lagging, and /health."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from patron import clock
from patron.app import create_app
from patron.db.engine import Database
from patron.events.models import DomainEvent
from patron.ops.readiness import script_heads


def test_ready_when_database_schema_and_outbox_are_fine(client: TestClient, db: Database):
    answer = client.get("/ready")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {"ok": True, "dialect": db.dialect}
    assert body["checks"]["migrations"]["current"] == sorted(script_heads())
    assert body["checks"]["outbox"]["undispatched"] == 0
    assert client.get("/health").json()["status"] == "ok"


def test_not_ready_when_the_schema_is_behind(client: TestClient, db: Database):
    with db.engine.begin() as conn:
        heads = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0019')"))
    try:
        answer = client.get("/ready")
    finally:  # the PostgreSQL database is shared by this process's tests
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            for head in heads:
                conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["error"] == "not_ready"
    assert "0019" in body["detail"] and "patron db upgrade" in body["detail"]
    assert body["checks"]["migrations"] == {
        "ok": False,
        "current": ["0019"],
        "head": sorted(script_heads()),
    }


def _old_event(db: Database, age: timedelta) -> None:
    with db.unit_of_work() as session:
        session.add(
            DomainEvent(kind="points.earned", payload={}, at=clock.now() - age, dispatched=False)
        )


def test_outbox_lag_is_reported_and_fails_only_past_a_set_limit(client, db, setting):
    _old_event(db, timedelta(minutes=30))
    answer = client.get("/ready")  # no limit by default: reported, not fatal
    assert answer.status_code == 200
    assert 1790 <= answer.json()["checks"]["outbox"]["oldest_age_seconds"] <= 1900

    setting("ready_max_outbox_lag_seconds", "600")
    answer = client.get("/ready")
    assert answer.status_code == 503, answer.text
    outbox = answer.json()["checks"]["outbox"]
    assert outbox["ok"] is False and outbox["undispatched"] == 1
    assert "delivery loop" in answer.json()["detail"]

    setting("ready_max_outbox_lag_seconds", "3600")  # the same lag, under a looser limit
    assert client.get("/ready").status_code == 200


def test_not_ready_when_the_database_is_unreachable(tmp_path):
    gone = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'patron.db'}")
    with TestClient(create_app(db=gone)) as client:
        answer = client.get("/ready")
        assert client.get("/health").status_code == 200  # liveness does not touch the database
    assert answer.status_code == 503
    assert answer.json()["error"] == "not_ready"
    assert answer.json()["checks"]["database"]["ok"] is False
