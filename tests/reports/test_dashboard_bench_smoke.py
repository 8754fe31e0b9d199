"""benchmarks/dashboard.py at a tiny size, so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PG_URL

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "dashboard.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patron_bench_dashboard", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_tiny_demo_gives_the_same_series_both_ways(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    argv = ["--members", "4", "--days", "70", "--runs", "1", "--json", str(out)]
    if PG_URL:
        name = f"patron_bench_dash_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
        admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        argv += ["--dbs", "sqlite,postgresql", "--pg-url", admin, "--db-name", name]
    else:
        argv += ["--dbs", "sqlite"]
    result = bench.main(argv)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["correct"] is True and result["correct"] is True
    assert set(written["engines"]) == ({"sqlite", "postgresql"} if PG_URL else {"sqlite"})
    for figures in written["engines"].values():
        assert len(figures["points"]) == 12 and figures["points"][-1][1] > 0
        assert figures["series_ms"] > 0 and figures["baseline_liability_per_month_ms"] > 0


def test_arguments(bench: ModuleType) -> None:
    args = bench.parse_args(["--dbs", "sqlite", "--members", "20"])
    assert (args.dbs, args.members, args.days, args.runs) == ("sqlite", 20, 365, 5)
