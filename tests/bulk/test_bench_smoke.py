"""benchmarks/import_members.py at a tiny size, so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "import_members.py"


@pytest.mark.skipif(not PG_URL, reason="the baseline is a PostgreSQL COPY")
def test_the_import_benchmark_runs_and_is_correct(tmp_path: Path):
    out = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--rows",
            "60",
            "--chunk-size",
            "25",
            "--pg-url",
            PG_URL,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["rows"] == 60 and result["correct"] is True
    assert result["tables"]["members"] == 60 and result["baseline_copy_s"] > 0
    assert result["ratio"] > 0
