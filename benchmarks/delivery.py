"""Webhook delivery throughput: Patron's runners against a plain HTTP client, same receiver.

    python benchmarks/delivery.py [--events 5000] [--members 500] [--runners 1,2]
                                  [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

A receiver (uvicorn, a minimal ASGI app, its own process, keep-alive) counts every request and
the distinct webhook-ids. Baseline: `--events` POSTs of a body of the same size from 8 threads
with one httpx client each (what the network and the receiver allow, with no database). Figure:
`--events` outbox events spread over `--members` members, delivered by N `patron worker`
processes (each sending 8 at a time) from the moment they start until every delivery is
`delivered`; the receiver must have seen each event exactly once. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

RECEIVER = r"""
import json, sys
seen, total = set(), [0]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stats":
        data = json.dumps({"total": total[0], "distinct": len(seen)}).encode()
    elif scope["path"] == "/reset":
        seen.clear(); total[0] = 0; data = b"{}"
    else:
        total[0] += 1
        for k, v in scope["headers"]:
            if k == b"webhook-id":
                seen.add(v)
        data = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    (tmp / "receiver_app.py").write_text(RECEIVER)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "uvicorn"), "receiver_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=tmp,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/stats", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("receiver did not start")


def baseline(url: str, events: int, body: bytes) -> float:
    per = events // 8

    def run() -> None:
        with httpx.Client() as c:
            for i in range(per):
                c.post(
                    url + "/hooks",
                    content=body,
                    headers={"webhook-id": f"b{threading.get_ident()}-{i}"},
                )

    threads = [threading.Thread(target=run) for _ in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * 8 / (time.perf_counter() - start)


def prepare(url: str, receiver: str, events: int, members: int) -> None:
    from patron import clock
    from patron.audit.service import CLI
    from patron.db.engine import Database
    from patron.db.migrate import upgrade
    from patron.programs.schemas import ProgramCreate
    from patron.setup import service as setup
    from patron.webhooks import service as webhooks

    sys.path.insert(0, str(ROOT))
    from tests.factories import BAKERY

    upgrade(url)
    db = Database(url)
    with db.unit_of_work() as s:
        program = setup.create_program(
            s, ProgramCreate.model_validate(BAKERY), actor=CLI, now=clock.now()
        )
        webhooks.create_endpoint(
            s,
            program,
            receiver + "/hooks",
            "bench",
            ["*"],
            actor=CLI,
            now=clock.now(),
            allow_private=True,
        )
        pid = program.id
    db.dispose()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute(
            "INSERT INTO domain_events (program_id, member_id, kind, payload, at, dispatched) "
            "SELECT %s, 1 + g %% %s, 'points.adjusted', "
            "jsonb_build_object('program', 'bakery', 'points', g, 'member_id', 1 + g %% %s), now(), false "
            "FROM generate_series(1, %s) g",
            (pid, members, members, events),
        )


def run_runners(url: str, n: int, events: int) -> float:
    env = {
        **os.environ,
        "PATRON_DATABASE_URL": url,
        "PATRON_WEBHOOK_ALLOW_PRIVATE": "true",
        "PATRON_DELIVERY_POLL_SECONDS": "0.05",
    }
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [str(BIN / "patron"), "worker", "--no-jobs"], env=env, stdout=subprocess.DEVNULL
        )
        for _ in range(n)
    ]
    try:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
                ).fetchone()
                if done and done[0] >= events:
                    break
                if time.perf_counter() - start > 600:
                    raise SystemExit("runners did not finish in 10 minutes")
                time.sleep(0.05)
        return events / (time.perf_counter() - start)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--runners", default="1,2")
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    receiver, rurl = start_receiver(tmp)
    admin = args.database_url.replace("+psycopg", "")
    base, _, _ = admin.rpartition("/")
    out: dict[str, object] = {"events": args.events, "members": args.members}
    try:
        body = json.dumps(
            {
                "id": "evt_1",
                "type": "points.adjusted",
                "data": {"points": 1, "member_id": 1, "program": "bakery"},
                "timestamp": "2026-12-01T00:00:00+00:00",
                "program": "bakery",
            }
        ).encode()
        out["baseline_posts_per_s"] = round(baseline(rurl, args.events, body), 1)
        for n in (int(x) for x in args.runners.split(",")):
            name = f"patron_bench_delivery_{n}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
            url = f"{base}/{name}"
            prepare(url, rurl, args.events, args.members)
            httpx.post(rurl + "/reset")
            rate = run_runners(url, n, args.events)
            stats = httpx.get(rurl + "/stats").json()
            out[f"runners_{n}"] = {
                "deliveries_per_s": round(rate, 1),
                "ratio_to_baseline": round(rate / out["baseline_posts_per_s"], 3),  # type: ignore[operator]
                "received": stats["total"],
                "distinct": stats["distinct"],
                "exactly_once": stats["total"] == stats["distinct"] == args.events,
            }
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        receiver.terminate()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
