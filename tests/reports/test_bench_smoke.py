"""benchmarks/reports_year.py at a tiny size, so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PG_URL

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reports_year.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patron_bench_reports_year", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not PG_URL, reason="the benchmark generates its data on PostgreSQL")
def test_a_tiny_year_is_generated_rolled_up_and_reported_exactly(
    bench: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    name = f"patron_bench_smoke_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    result = bench.main(
        [
            "--entries",
            "3000",
            "--accounts",
            "40",
            "--stores",
            "3",
            "--runs",
            "1",
            "--tail",
            "100",
            "--pg-url",
            admin,
            "--db-name",
            name,
            "--json",
            str(out),
            "--check",
        ]
    )
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["correct"] is True and result["correct"] is True
    assert written["tail"]["correct"] is True
    assert written["generated"]["entries"] == 3000
    assert written["refresh"]["rollup_rows"] > 0 and written["baseline"]["seconds"] > 0
    assert set(written["reports"]) == {
        "year_by_day",
        "year_by_month_and_store",
        "year_by_month_and_tier",
        "liability_year_end",
    }


def test_arguments(bench: ModuleType) -> None:
    args = bench.parse_args(["--entries", "5000", "--stores", "4"])
    assert (args.entries, args.stores, args.accounts) == (5000, 4, 200_000)
    with pytest.raises(SystemExit):
        bench.parse_args(["--entries", "5"])
