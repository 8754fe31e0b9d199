"""/metrics after real requests: a till earn answered by the raw till route, route templates
(never raw paths) with their latency, the outbox gauges; and metrics switched off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from patron import clock
from patron.app import create_app
from patron.audit.service import CLI
from patron.auth.service import create_key
from patron.db.engine import Database
from patron.ops.jobs import MeasuredDeliveryLoop
from tests.conftest import auth
from tests.factories import BAKERY

P = "/api/v1/programs/bakery"


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def till(sqlite_db: Database) -> Iterator[tuple[TestClient, Any, dict[str, str]]]:
    app = create_app(db=sqlite_db, group_commit=True)
    with sqlite_db.unit_of_work() as session:
        keys = {
            scope: create_key(session, name=scope, scopes=[scope], actor=CLI, now=clock.now())[1]
            for scope in ("admin", "pos")
        }
    with TestClient(app) as client:
        admin = auth(keys["admin"])
        assert client.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201
        store = {"code": "mapo", "name": "Mapo"}
        assert client.post(f"{P}/stores", json=store, headers=admin).status_code == 201
        yield client, app, auth(keys["pos"])


def test_a_till_earn_and_route_latencies_are_counted(till, sqlite_db):
    client, app, pos = till
    before = samples(client)
    body = {"name": "Kim", "phone": "010-5555-0001", "program": "bakery"}
    member = client.post("/api/v1/members", json=body, headers=pos)
    assert member.status_code == 201, member.text
    sale = {"external_id": "OPS-1", "member": {"phone": "010-5555-0001"}, "amount": 12000}
    answer = client.post(f"{P}/purchases", json=sale, headers=pos)
    assert answer.status_code == 201, answer.text
    # Answered by the raw till route (patron.sales.till_route), not by the FastAPI route.
    assert app.state.group_commit.sales == 1
    assert client.get(f"/api/v1/members/{member.json()['id']}", headers=pos).status_code == 200
    client.get(f"/api/v1/members/{member.json()['id'] + 1000}", headers=pos)
    after = samples(client)

    route = "/api/v1/programs/{code}/purchases"
    assert (
        value(after, "patron_points_operations_total", operation="earn")
        - value(before, "patron_points_operations_total", operation="earn")
        == 1
    )
    key = {"method": "POST", "route": route, "status": "201"}
    assert (
        value(after, "patron_http_requests_total", **key)
        - value(before, "patron_http_requests_total", **key)
        == 1
    )
    latency = {"method": "POST", "route": route}
    count = "patron_http_request_duration_seconds_count"
    assert value(after, count, **latency) - value(before, count, **latency) == 1
    assert value(after, "patron_http_request_duration_seconds_sum", **latency) > 0
    member_route = "/api/v1/members/{member_id}"
    statuses = {
        dict(labels)["status"]
        for (name, labels) in after
        if name == "patron_http_requests_total" and dict(labels)["route"] == member_route
    }
    assert {"200", "404"} <= statuses
    # Raw paths never become labels.
    assert not [labels for (_n, labels) in after if ("route", f"{P}/purchases") in labels]
    # The group commit's counters: one group of one sale (a lone sale: no wait).
    for name in ("patron_group_commit_groups_total", "patron_group_commit_sales_total"):
        assert value(after, name) - value(before, name) == 1, name
    assert value(after, "patron_outbox_undispatched_events") >= 1  # the earn's event
    assert value(after, "patron_outbox_readable") == 1

    # The in-process delivery loop times its rounds, and dispatching empties the gauge.
    rounds = MeasuredDeliveryLoop(sqlite_db, jobs=False).drain().events
    assert rounds >= 1
    done = samples(client)
    job = "patron_job_duration_seconds_count"
    assert value(done, job, job="delivery_round") - value(after, job, job="delivery_round") >= 2
    assert value(done, "patron_outbox_undispatched_events") == 0


def test_unknown_paths_and_methods_share_one_label(till):
    client, _app, _pos = till
    for i in range(3):
        client.get(f"/no/such/path/{i}")
    client.request("BREW", "/coffee")
    after = samples(client)
    routes = {
        dict(labels)["route"] for (name, labels) in after if name == "patron_http_requests_total"
    }
    assert not any(r.startswith("/no/such") for r in routes)
    assert (
        value(after, "patron_http_requests_total", method="GET", route="<unmatched>", status="404")
        >= 3
    )
    methods = {
        dict(labels)["method"] for (name, labels) in after if name == "patron_http_requests_total"
    }
    assert "BREW" not in methods and "other" in methods


def test_metrics_can_be_switched_off_and_health_ready_are_declared(sqlite_db, setting):
    setting("metrics", "false")
    app = create_app(db=sqlite_db)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/health").headers["x-request-id"]  # request ids stay on
    paths = app.openapi()["paths"]
    assert "/metrics" not in paths
    # /health and /ready are declared, the 503 with its code and body.
    assert "200" in paths["/health"]["get"]["responses"]
    ready = paths["/ready"]["get"]["responses"]
    assert "200" in ready and "not_ready" in ready["503"]["description"]
    assert "NotReadyBody" in str(ready["503"]["content"])
