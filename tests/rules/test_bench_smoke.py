"""The rules-core benchmark runs end to end (a smoke run: no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rules_core.py"


def test_benchmark_script_writes_its_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("rules_core_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out_file = tmp_path / "bench.json"

    result = module.main(["--iterations", "5", "--json", str(out_file)])

    written = json.loads(out_file.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(result))
    for key in ("evaluate_us", "baseline_single_rule_us", "baseline_json_us"):
        assert set(written[key]) >= {"median", "p99"}
        assert written[key]["median"] > 0
    assert written["ratio_vs_single_rule"] > 0 and written["ratio_vs_json"] > 0
    assert (written["rules"], written["lines"], written["iterations"]) == (20, 10, 5)
    assert written["points"] == 5607  # the benchmark basket is a real, checked evaluation
    assert "median" in capsys.readouterr().out
