"""What the metrics middleware costs the till: HTTP earn with PATRON_METRICS off and on.

    python benchmarks/ops_metrics.py [--db sqlite|postgresql] [--pairs 3] [--duration 15]

`patron serve` (one worker) on a fresh bakery database, driven by wrk with unique purchases
(the load script of run.py), alternately with metrics off and on, `--pairs` times. For each run
it records earns/s, p50/p99 and the server's CPU per acknowledged earn — the figure that does
not depend on whatever else the machine runs. Prints the medians and the on/off ratios
(decision 0029); `--json` keeps every run.

`--micro`: the middleware alone, in process: CPU per request of `OpsMiddleware` around an ASGI
app that answers at once (the till route's case: no `scope["route"]`, so the label comes from
the till pattern), against the bare app — the added µs, to set beside the CPU of an earn. On a
loaded machine this is the steadier figure: the HTTP runs' spread is larger than the effect.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import run as bench  # benchmarks/run.py: the server, the load script, the setup


def one_run(url: str, setup: dict[str, Any], metrics: bool, duration: float, tag: str) -> dict:
    os.environ["PATRON_METRICS"] = "true" if metrics else "false"
    server = bench.Server(url, 1)
    server.start(timeout=180)
    try:
        bench.warm_members(server, setup, tag)
        pids = server.worker_pids()
        cpu_before = sum(bench.cpu_seconds(pid) for pid in pids)
        load = bench.drive(server, setup, duration, 8, tag)
        cpu = sum(bench.cpu_seconds(pid) for pid in pids) - cpu_before
    finally:
        server.stop()
    return {
        "metrics": metrics,
        "earn_per_s": round(load["created"] / load["seconds"], 1),
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "cpu_ms_per_earn": round(1000 * cpu / max(load["created"], 1), 4),
        "other_status": load["other_status"],
    }


def micro(calls: int = 200_000, repeat: int = 7) -> dict[str, float]:
    import asyncio

    from patron.ops.middleware import OpsMiddleware

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer x" * 8)]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/programs/bakery/purchases",
        "headers": headers,
    }

    async def loop(app: Any) -> float:
        started = time.process_time()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / calls * 1e6

    apps = {
        "bare": answer,
        "ids_only": OpsMiddleware(answer, metrics=False),
        "ids_and_metrics": OpsMiddleware(answer, metrics=True),
    }
    best = {name: min(asyncio.run(loop(app)) for _ in range(repeat)) for name, app in apps.items()}
    return {f"{name}_us": round(us, 3) for name, us in best.items()} | {
        "added_us": round(best["ids_and_metrics"] - best["bare"], 3)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--micro", action="store_true", help="the middleware alone, in process")
    args = parser.parse_args()
    if args.micro:
        print(json.dumps(micro(), indent=2))
        return
    workdir = Path(tempfile.mkdtemp(prefix="patron-ops-bench-"))
    pg_name = f"patron_ops_bench_{os.getpid()}"
    if args.db == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        url = bench.fresh_pg_database(pg_name)
    runs: list[dict[str, Any]] = []
    try:
        setup = bench.setup_bakery(url, args.members)
        for pair in range(args.pairs):
            # Alternate which goes first, so a drift of the machine's load favours neither.
            order = (False, True) if pair % 2 == 0 else (True, False)
            for metrics in order:
                tag = f"ops{int(time.time())}{int(metrics)}"
                runs.append(one_run(url, setup, metrics, args.duration, tag))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.db == "postgresql":
            bench.drop_pg_database(pg_name)

    def median(key: str, metrics: bool) -> float:
        return statistics.median(r[key] for r in runs if r["metrics"] is metrics)

    summary = {
        "db": args.db,
        "pairs": args.pairs,
        "duration_s": args.duration,
        "loadavg": os.getloadavg()[0],
        **{
            f"{key}_{state}": median(key, state == "on")
            for key in ("earn_per_s", "p50_ms", "p99_ms", "cpu_ms_per_earn")
            for state in ("off", "on")
        },
    }
    summary["cpu_per_earn_ratio_on_off"] = round(
        summary["cpu_ms_per_earn_on"] / summary["cpu_ms_per_earn_off"], 4
    )
    summary["throughput_ratio_off_on"] = round(
        summary["earn_per_s_off"] / summary["earn_per_s_on"], 4
    )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
