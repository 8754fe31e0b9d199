"""benchmarks/rewards.py for a second of load, so the redeem benchmark cannot rot.

No timing is asserted: the run must write its figure, its same-run baseline (the raw sqlite3
loop; pgbench TPC-B on PostgreSQL) and the ratio, and every correctness flag must hold: `patron
check` clean, stock = initial − redemptions, one coupon and one redeem entry per redemption.
SQLite always; PostgreSQL too when PATRON_TEST_DATABASE_URL is set (pgbench at scale 1).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PG_URL

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rewards.py"
KEYS = {
    "figure",
    "unit",
    "baseline",
    "baseline_name",
    "ratio",
    "p50_ms",
    "p99_ms",
    "target",
    "target_met",
    "correct",
    "http",
    "serial",
    "setup",
}
FLAGS = (
    "stock_is_initial_minus_redemptions",
    "coupons_equal_redemptions",
    "entries_equal_redemptions",
    "keys_equal_redemptions",
    "in_flight_within_connections",
    "all_201",
    "correct",
)


@pytest.fixture(scope="module")
def rewards_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patron_bench_rewards", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_command_line(rewards_bench: ModuleType) -> None:
    args = rewards_bench.parse_args(["--dbs", "sqlite,postgresql", "--no-idempotency-key"])
    assert args.dbs == ["sqlite", "postgresql"] and args.idempotency_key is False
    assert args.duration == 20 and args.stock == 10_000_000 and args.rewards == 1
    for wrong in (["--dbs", "mysql"], ["--duration", "0.5"], ["--rewards", "0"]):
        with pytest.raises(SystemExit):
            rewards_bench.parse_args(wrong)


def _dialects() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.mark.parametrize("dialect", _dialects())
def test_a_short_run_writes_its_figures_and_stays_correct(
    rewards_bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dialect: str
) -> None:
    if dialect == "postgresql":
        if not shutil.which("pgbench"):
            pytest.skip("pgbench is not installed")
        admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        monkeypatch.setattr(rewards_bench.bench, "PG_ADMIN_URL", admin)
    out_file = tmp_path / "rewards.json"
    result = rewards_bench.main(
        [
            "--dbs", dialect, "--duration", "1", "--members", "12", "--connections", "3",
            "--workers", "1", "--sqlite-workers", "1", "--rewards", "2", "--stock", "100000",
            "--serial", "2", "--pgbench-clients", "2", "--pgbench-scale", "1",
            "--json", str(out_file),
        ]
    )  # fmt: skip

    written = json.loads(out_file.read_text(encoding="utf-8"))
    assert written["benchmark"] == "patron-rewards" and set(written) >= {"machine", "settings"}
    assert written["scenarios"] == json.loads(json.dumps(result["scenarios"], default=str))
    name = "redeem_pg" if dialect == "postgresql" else "redeem_sqlite"
    run = written["scenarios"][name]
    assert set(run) >= KEYS and run["unit"] == "redemptions/s"
    assert run["figure"] > 0 and run["baseline"] > 0 and run["ratio"] > 0
    assert 0 < run["p50_ms"] <= run["p99_ms"]
    assert ("pgbench" if dialect == "postgresql" else "raw_loop") in run
    correctness = run["http"]["correctness"]
    assert correctness["check"]["clean"], correctness["check"]["output"]
    assert {flag: correctness[flag] for flag in FLAGS} == dict.fromkeys(FLAGS, True)
    assert run["correct"] is True
    # Both rewards were redeemed from: stock per reward = 100,000 − its redemptions.
    assert set(correctness["stock_left"]) == {"bench-tumbler-1", "bench-tumbler-2"}
    serial = run["serial"]
    redeemed = correctness["redemptions_in_db"] + serial["redemptions"] + serial["warm_up"]
    assert sum(100_000 - left for left in correctness["stock_left"].values()) == redeemed
    assert run["serial"]["statements_per_redemption"] > 0
