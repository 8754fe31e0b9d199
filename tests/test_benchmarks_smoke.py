"""benchmarks/run.py at tiny sizes, so the suite cannot rot (no timing is asserted).

No wrk, pgbench or PostgreSQL needed: expiry runs on SQLite with 200 lots, the raw sqlite3
loop runs 50 earns on a database set up through patron's services, and `patron check` must be
clean after each.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patron_bench_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_expiry_on_sqlite_keeps_the_ledger_consistent(bench: ModuleType, tmp_path: Path) -> None:
    run = bench.expiry_run("sqlite", 200, per_account=10, workdir=tmp_path)

    assert {"figure", "unit", "baseline", "baseline_name", "ratio", "target", "correct"} <= set(run)
    assert run["lots"] == run["expired_lots"] == run["expired_entries"] == 200
    assert run["accounts"] == 20
    assert run["figure"] > 0 and run["baseline"] > 0 and run["ratio"] > 0
    assert run["check"]["clean"], run["check"]["output"]
    assert run["correct"] is True
    json.dumps(run)  # what goes into the result file


def test_raw_sqlite_loop_writes_what_patron_check_accepts(
    bench: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "raw.db"
    setup = bench.setup_bakery(f"sqlite:///{path}", 5)
    assert setup["member_hi"] - setup["member_lo"] == 4 and setup["key"]

    loop = bench.raw_sqlite_loop(path, iterations=50)

    assert loop["earns"] == 50 and loop["earn_per_s"] > 0
    check = bench.patron_check(f"sqlite:///{path}")
    assert check["clean"], check["output"]
    assert "50 entries" in check["output"]


def test_batch_over_http_on_sqlite_counts_what_it_recorded(
    bench: ModuleType, tmp_path: Path
) -> None:
    """The batch scenario's driver against a real `patron serve` (one worker, SQLite)."""
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    setup = bench.setup_bakery(url, 6)

    run = bench.batch_over_http(url, setup, purchases=60, clients=1, workers=1, tag="smoke")

    assert run["created"] == run["earn_entries_in_db"] == run["purchases_in_db"] == 60
    assert run["entries_match"] is True and run["request_errors"] == []
    assert run["purchases_per_s"] > 0 and run["server_cpu_ms_per_purchase"] >= 0
    assert run["check"]["clean"], run["check"]["output"]
    json.dumps(run)


def test_command_line_and_result_file(bench: ModuleType, tmp_path: Path) -> None:
    args = bench.parse_args(["--scenarios", "expiry", "--sizes", "100", "--duration", "1"])
    assert args.scenarios == ["expiry"] and args.sizes == [100]
    with pytest.raises(SystemExit):
        bench.parse_args(["--scenarios", "nope"])
    batch = bench.parse_args(["--scenarios", "batch_pg,batch_sqlite", "--batch-purchases", "9"])
    assert batch.scenarios == ["batch_pg", "batch_sqlite"] and batch.batch_purchases == 9

    # The one command, end to end, on SQLite only.
    out_file = tmp_path / "latest.json"
    result = bench.main(
        [
            "--scenarios",
            "expiry",
            "--sizes",
            "100",
            "--expiry-dbs",
            "sqlite",
            "--json",
            str(out_file),
        ]
    )
    written = json.loads(out_file.read_text(encoding="utf-8"))
    assert written["benchmark"] == "patron" and set(written) >= {"machine", "settings", "scenarios"}
    runs = written["scenarios"]["expiry"]["runs"]
    assert set(runs) == {"sqlite_100"} and runs["sqlite_100"]["correct"] is True
    assert result["scenarios"]["expiry"]["runs"]["sqlite_100"]["lots"] == 100


def test_profile_summary_groups_samples(bench: ModuleType, tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "main (a.py:1);purchase (patron/ledger/purchases.py:9);execute (psycopg/cursor.py:1) 6\n"
        "main (a.py:1);purchase (patron/ledger/purchases.py:9);_flush (sqlalchemy/orm/s.py:2) 3\n"
        "main (a.py:1);select (selectors.py:469) 50\n"
        "main (a.py:1);evaluate (patron/rules/engine.py:3) 1\n"
    )
    summary = bench.summarise_profile(raw)
    assert summary["samples"] == 10 and summary["idle_samples"] == 50
    groups = summary["groups_pct"]
    assert groups["database driver: waiting on / talking to the database"] == 60.0
    assert groups["patron rules engine"] == 10.0
