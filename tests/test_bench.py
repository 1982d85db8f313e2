"""`worldgym bench` runs every section end to end on a tiny checkpoint and writes its figures (no timing asserted)."""

from __future__ import annotations

import json

from worldgym.model import checkpoint
from worldgym.cli import main
from worldgym.model.hardware import RELEVANT_FLAGS, cpu_summary

from conftest import tiny_model


def test_bench_all_sections_write_json(tmp_path, capsys):
    path = checkpoint.save(tiny_model(), tmp_path / "tiny")
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", str(path), "--sections", "all", "--batch-sizes", "1,3", "--steps", "5", "--horizon", "120"]
    assert main(argv + ["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["latency"]["p99_ms"] >= report["latency"]["p50_ms"] > 0 and report["latency"]["aten_calls_per_step"] > 0
    assert [r["batch"] for r in report["throughput"]] == [1, 3]
    assert all(r["speedup"] > 0 for r in report["cache"])
    assert report["horizon"]["steps"] == 120 and report["horizon"]["cache_bytes"] > 0
    assert [r["dtype"] for r in report["dtype"]] == ["float32", "bfloat16"]
    printed = capsys.readouterr().out
    assert "cache vs recompute" in printed and "targets (DESIGN.md section 6)" in printed
    assert set(report["machine"]["cpu_flags"]) == set(RELEVANT_FLAGS) and report["machine"]["cpu"]
    assert "cpu: " in printed and "avx512_bf16" in printed and "amx_bf16" in printed
    assert "load average" in printed and len(report["machine"]["load_average"]) == 3  # the figures' conditions
    whats = [r["what"] for r in report["targets"]]
    assert "one env p50 ms" in whats and any(w.startswith("cache vs recomputing window") and w.endswith("batch 3") for w in whats)


def test_cli_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out


def test_targets_are_judged_from_the_report_figures():
    from worldgym.evaluation.bench import check_targets

    report = {
        "latency": {"p50_ms": 1.9, "p99_ms": 4.5},
        "throughput": [{"batch": 16, "pixels_steps_per_s": 900.0}, {"batch": 256, "pixels_steps_per_s": 4999.0, "latents_steps_per_s": 15001.0}],
        "dtype": [{"dtype": "float32", "steps_per_s_batch256": 4000.0}, {"dtype": "bfloat16", "steps_per_s_batch256": 5001.0}],
        "twin": [{"batch": 16, "pixels_steps_per_s": 300.0}, {"batch": 256, "pixels_steps_per_s": 1700.0}],
        "cache": [{"batch": 1, "window": 8, "speedup": 1.2}, {"batch": 256, "window": 8, "speedup": 4.0}],
        "horizon": {"steps": 10000, "ab_ratio": 1.06, "rss_mb_at_1000": 400.0, "rss_mb_at_10000": 400.2},
    }
    got = {r["what"]: (r["measured"], r["met"]) for r in check_targets(report)}
    assert got == {
        "one env p50 ms": (1.9, True),
        "one env p99 ms": (4.5, False),
        "256 envs, pixels, float32, env-steps/s": (4999.0, False),
        "256 envs, latents, float32, env-steps/s": (15001.0, True),
        "256 envs, pixels, bfloat16 (the dtype section), env-steps/s": (5001.0, True),
        "float32 vs the real twin at batch 256": (2.941, False),
        "cache vs recomputing window 8, batch 1": (1.2, False),
        "cache vs recomputing window 8, batch 256": (4.0, True),
        "step time at step 10000 / step 100 (A/B)": (1.06, False),
        "resident memory growth, step 1,000 to 10000 (MiB)": (0.2, True),
    }
    # without batch 256 the twin ratio is judged at the largest batch both measured
    small = dict(report, throughput=report["throughput"][:1], twin=report["twin"][:1])
    assert [(r["what"], r["met"]) for r in check_targets(small) if "twin" in r["what"]] == [("float32 vs the real twin at batch 16", True)]
    # the throughput section runs in the default dtype and says which one it resolved to
    auto = dict(report, throughput=[dict(report["throughput"][1], dtype="bfloat16")])
    whats = [r["what"] for r in check_targets(auto)]
    assert "256 envs, pixels, bfloat16 (the default), env-steps/s" in whats and "bfloat16 (the default) vs the real twin at batch 256" in whats
    # a run of some sections judges only what it measured
    assert [r["what"] for r in check_targets({"latency": report["latency"]})] == ["one env p50 ms", "one env p99 ms"]


def test_cpu_summary_reads_model_and_relevant_flags():
    text = "processor\t: 0\nmodel name\t: Test CPU @ 2GHz\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    summary = cpu_summary(text)
    assert summary["model"] == "Test CPU @ 2GHz" and summary["amx"] is False
    assert summary["flags"] == {"amx_bf16": False, "amx_tile": False, "avx512_bf16": True, "avx512f": True, "avx2": True}
