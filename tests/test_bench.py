"""`worldgym bench` runs every section end to end on a tiny checkpoint and writes its figures (no timing asserted)."""

from __future__ import annotations

import json

from worldgym import checkpoint
from worldgym.cli import main

from conftest import tiny_model


def test_bench_all_sections_write_json(tmp_path, capsys):
    path = checkpoint.save(tiny_model(), tmp_path / "tiny")
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", str(path), "--sections", "all", "--batch-sizes", "1,3", "--steps", "5", "--horizon", "120"]
    assert main(argv + ["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["latency"]["p99_ms"] >= report["latency"]["p50_ms"] > 0
    assert [r["batch"] for r in report["throughput"]] == [1, 3]
    assert all(r["speedup"] > 0 for r in report["cache"])
    assert report["horizon"]["steps"] == 120 and report["horizon"]["cache_bytes"] > 0
    assert [r["dtype"] for r in report["dtype"]] == ["float32", "bfloat16"]
    assert "cache vs recompute" in capsys.readouterr().out


def test_cli_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out
