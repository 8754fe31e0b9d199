"""benchmarks/jobs.py on its own at tiny sizes, so the nightly-job benchmarks cannot rot.

(run.py, the one command, runs the same scenarios: tests/test_benchmarks_smoke.py.)

No timing is asserted: each scenario must write its figure, its same-run baseline and the ratio
into the result file, leave `patron check` clean and (tiers) give every member the tier the
policy gives. SQLite always; PostgreSQL too when PATRON_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PG_URL

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "jobs.py"
KEYS = {"figure", "unit", "baseline", "baseline_name", "ratio", "target", "target_met", "correct"}


@pytest.fixture(scope="module")
def jobs_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patron_bench_jobs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _dialects() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def test_command_line(jobs_bench: ModuleType) -> None:
    args = jobs_bench.parse_args(["--scenarios", "tiers", "--lots", "1_000", "--members", "10"])
    assert args.scenarios == ["tiers"] and args.lots == 1000 and args.members == 10
    for wrong in (["--scenarios", "nope"], ["--dbs", "mysql"], ["--moved-share", "2"]):
        with pytest.raises(SystemExit):
            jobs_bench.parse_args(wrong)


@pytest.mark.parametrize("dialect", _dialects())
def test_both_scenarios_write_their_figures_and_keep_the_ledger_clean(
    jobs_bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dialect: str
) -> None:
    if dialect == "postgresql":
        admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        monkeypatch.setattr(jobs_bench.bench, "PG_ADMIN_URL", admin)
    out_file = tmp_path / "jobs.json"
    result = jobs_bench.main(
        [
            "--dbs",
            dialect,
            "--lots",
            "300",
            "--lots-per-account",
            "7",
            "--members",
            "60",
            "--entries",
            "500",
            "--batch-size",
            "40",
            "--tier-batch-size",
            "25",
            "--json",
            str(out_file),
        ]
    )
    written = json.loads(out_file.read_text(encoding="utf-8"))
    assert written["benchmark"] == "patron-jobs" and set(written) >= {"machine", "settings"}
    assert written["scenarios"] == json.loads(json.dumps(result["scenarios"], default=str))

    expiry = written["scenarios"]["expiry"][dialect]
    assert set(expiry) >= KEYS
    assert expiry["expired_lots"] == expiry["expired_entries"] == expiry["movements"] == 300
    assert expiry["expired_accounts"] == expiry["accounts"] == 43  # ceil(300 / 7)
    assert expiry["dry_run"]["lots"] == 300 and expiry["rerun_lots"] == 0
    assert expiry["figure"] > 0 and expiry["baseline"] > 0 and expiry["ratio"] > 0
    assert expiry["check"]["clean"], expiry["check"]["output"]
    assert expiry["correct"] is True
    # Its floor wrote the same rows by plain SQL: an entry and an event a lot here (each lot
    # of a member expires on its own day), a movement a lot.
    assert expiry["floor_rows"] == {"entries": 300, "movements": 300, "events": 300}
    assert expiry["floor_s"] > 0 and expiry["times_floor"] > 0
    assert set(expiry["floor_steps_s"]) >= {"insert entries", "insert movements", "update lots"}

    tiers = written["scenarios"]["tiers"][dialect]
    assert set(tiers) >= KEYS
    assert tiers["accounts"] == 60 and tiers["wrong_tiers"] == 0
    assert tiers["moved"] == tiers["expected_moves"] == tiers["history_rows"] == tiers["events"]
    assert tiers["moved"] > 0 and tiers["kept_manual"] > 0
    assert tiers["valid_until_not_extended"] == 0 and tiers["rerun_already_done"] is True
    assert tiers["figure"] > 0 and tiers["baseline"] > 0 and tiers["ratio"] > 0
    assert tiers["check"]["clean"], tiers["check"]["output"]
    assert tiers["correct"] is True
    moved = tiers["moved"]
    assert tiers["floor_rows"] == {"history": moved, "events": moved, "accounts": moved}
    assert tiers["floor_s"] > 0 and tiers["floor_times_group_by"] > 0
