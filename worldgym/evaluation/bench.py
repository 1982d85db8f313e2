"""Measure a world model's speed: step latency, batched throughput, cache speed-up, horizon, dtypes, real twin.

Sections (``--sections``, comma separated; default ``latency,throughput,cache``; ``all`` runs every one):

  latency     one env, pixels out: p50 / p99 step time over ``--steps`` steps, aten calls a step (torch.profiler)
  throughput  env-steps per second against batch size, with pixel and with latent observations, in the
              default dtype ("auto": which precision it resolved to, and how, is printed per batch)
  cache       a cached step against recomputing the whole window without a cache (float32, same batch and sampler)
  horizon     step time around step 100 and step 10,000 of one rollout (and, robust to the machine's
              load, steps from snapshots of both states timed in alternation), resident memory over it
  dtype       float32 against bfloat16 autocast (batch 1 latency and largest-batch throughput)
  twin        the real twin's pixel throughput at the same batch sizes (a loop over independent envs)

Benchmarks print a table and, with ``--json PATH``, write every figure. They are never run
as timed tests; copy their output, the command and the machine into BENCHMARKS.md. The run
ends with the engine targets of the design (`TARGETS`) checked against its own figures:
every target whose sections ran is reported met or missed, with its figure.

Example:
  worldgym bench --model CartPole --sections all --batch-sizes 1,16,256 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from worldgym.config_io import UserError
from worldgym.engine import WorldModel
from worldgym.engine.precision import choose_dtype
from worldgym.model.hardware import AUTO_DTYPE_ENV, cpu_summary
from worldgym.model.networks import Model

SECTIONS = ("latency", "throughput", "cache", "horizon", "dtype", "twin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="CartPole", help="shipped model name or checkpoint folder (default: CartPole)")
    parser.add_argument("--sections", default="latency,throughput,cache", help=f"comma list of {SECTIONS} or 'all'")
    parser.add_argument("--batch-sizes", default="1,16,256", help="batch sizes for throughput, cache and twin")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per measurement at batch 1 (fewer at large batches)")
    parser.add_argument("--horizon", type=int, default=10_000, help="rollout length for the horizon section")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")


def load_model(name: str) -> tuple[Model, str]:
    from worldgym.model import checkpoint

    model = checkpoint.load(name)
    return model, str(checkpoint.resolve(name))


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def make_engine(model: Model, batch: int, dtype: str = "auto") -> WorldModel:
    engine = WorldModel(model, batch, dtype=dtype)
    frames = model.start_frames[torch.arange(batch) % model.start_frames.shape[0]]  # (B, F, H, W, 3)
    engine.reset(None, frames, seeds=list(range(batch)))
    return engine


def random_actions(model: Model, batch: int, rng: np.random.Generator) -> list[Any]:
    space = model.config.action.space()
    space.seed(int(rng.integers(2**31)))
    return [space.sample() for _ in range(batch)]


def time_steps(engine: WorldModel, model: Model, steps: int, decode: bool = True, warmup: int = 5) -> list[float]:
    """Seconds per step for ``steps`` steps of random actions after ``warmup`` untimed ones."""
    rng = np.random.default_rng(0)
    actions = [random_actions(model, engine.batch_size, rng) for _ in range(8)]
    for i in range(warmup):
        engine.step(actions[i % 8], decode=decode)
    out = []
    for i in range(steps):
        t = time.perf_counter()
        engine.step(actions[i % 8], decode=decode)
        out.append(time.perf_counter() - t)
    return out


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def steps_for(batch: int, base: int) -> int:
    """Timed steps at a batch size: ``base`` at batch 1, fewer for large batches (at least 3)."""
    return max(3, min(base, 2000 // batch))


def aten_calls_per_step(engine: WorldModel, model: Model, steps: int = 20) -> float:
    """aten operator calls (nested ones included) per engine step, counted by `torch.profiler`.

    A one-env step is dispatch-bound: this count, unlike its time, does not move with the machine's load.
    """
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(1)
    actions = [random_actions(model, engine.batch_size, rng) for _ in range(steps)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for a in actions:
            engine.step(a)
    return sum(e.name.startswith("aten::") for e in prof.events()) / steps


def bench_latency(model: Model, args: argparse.Namespace) -> dict[str, float]:
    engine = make_engine(model, 1)
    ts = time_steps(engine, model, args.steps)
    calls = aten_calls_per_step(engine, model)  # after the timed steps: the window is full, as in a long episode
    return {"p50_ms": percentile(ts, 50) * 1e3, "p99_ms": percentile(ts, 99) * 1e3, "mean_ms": statistics.mean(ts) * 1e3, "aten_calls_per_step": calls}


def bench_throughput(model: Model, batches: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    for b in batches:
        engine = make_engine(model, b)  # the default dtype, "auto"
        pixels = time_steps(engine, model, steps_for(b, args.steps))
        latents = time_steps(engine, model, steps_for(b, args.steps), decode=False)
        rows.append(
            {
                "batch": b,
                "pixels_steps_per_s": b / statistics.median(pixels),
                "latents_steps_per_s": b / statistics.median(latents),
                "pixels_step_ms": statistics.median(pixels) * 1e3,
                "dtype": engine.dtype,
                "dtype_choice": engine.dtype_choice,
            }
        )
    return rows


@torch.inference_mode()
def recompute_step(engine: WorldModel, actions: Any) -> torch.Tensor:
    """One block without using the cache's keys/values: recompute the whole window from latents each pass."""
    from worldgym.model.actions import to_tensor
    from worldgym.model.sampler import draw_noise, sample
    from worldgym.model.window import forward_window

    model, cache = engine.model, engine.cache
    dyn, ae = model.dynamics, model.config.autoencoder
    B = engine.batch_size
    a = to_tensor(model.config.action, actions, B, engine.device)
    null = torch.zeros(B, dtype=torch.bool)
    order = cache.order()  # every row full in the benchmark: all slots valid
    rows = torch.arange(B)[:, None]
    ctx, ctx_a, ctx_null = cache.latents[rows, order], cache.actions[rows, order], cache.null[rows, order]
    if engine.fused:  # the newest block waits outside the cache: it joins the window, the oldest window block leaves
        S, p = cache.sink, engine.pending
        keep = lambda x, new: torch.cat([x[:, :S], x[:, S + 1 :], new[:, None]], 1)  # noqa: E731
        ctx, ctx_a, ctx_null = keep(ctx, p["latents"]), keep(ctx_a, p["actions"]), keep(ctx_null, p["null"])
    ctx_t = torch.full(ctx_null.shape, engine.sampler.commit_noise)
    noise = draw_noise(engine.generators, (ae.tokens, ae.latent_channels), engine.device)

    def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.full((B,), t)
        return forward_window(dyn, ctx, ctx_t, ctx_a, ctx_null, x, tt, a, null)

    x0 = sample(denoise, noise, engine.schedule)
    model.autoencoder.decode(x0)
    return x0


def bench_cache(model: Model, batches: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    rng = np.random.default_rng(0)
    S, W = model.config.dynamics.sink, model.config.dynamics.window
    for b in batches:
        engine = make_engine(model, b, "float32")  # the recomputing baseline runs in float32
        for _ in range(S + W):  # fill the window so both paths see a full context
            engine.step(random_actions(model, b, rng))
        cached = time_steps(engine, model, steps_for(b, args.steps))
        acts = random_actions(model, b, rng)
        recompute_step(engine, acts)
        base = []
        for _ in range(steps_for(b, args.steps)):
            t = time.perf_counter()
            recompute_step(engine, acts)
            base.append(time.perf_counter() - t)
        rows.append(
            {
                "batch": b,
                "window": W,
                "sink": S,
                "cached_ms": statistics.median(cached) * 1e3,
                "recompute_ms": statistics.median(base) * 1e3,
                "speedup": statistics.median(base) / statistics.median(cached),
            }
        )
    return rows


def bench_horizon(model: Model, horizon: int, probes: int = 200) -> dict[str, float]:
    """One rollout of ``horizon`` steps: step time around step 100 and at the end, resident memory over it.

    Step times on a shared machine drift with its load, more than any effect of the state. So
    besides the rollout's own medians this snapshots the engine at step 100 and at the end and
    times single steps from each snapshot in alternation (``probes`` each, the same actions):
    the A/B ratio compares the two states under the same conditions.
    """
    if horizon <= 101:
        raise UserError(f"--horizon must be more than 101 steps (it is compared with step 100), got {horizon}")
    engine = make_engine(model, 1)
    rng = np.random.default_rng(0)
    acts = [random_actions(model, 1, rng) for _ in range(16)]
    times, rss, snapshots = [], {}, {}
    for i in range(horizon):
        if i in (100, horizon - 1):
            snapshots[i] = engine.get_state()
        t = time.perf_counter()
        engine.step(acts[i % 16])
        times.append(time.perf_counter() - t)
        if i + 1 in (100, 1000, horizon):
            rss[i + 1] = rss_mb()
    around = lambda k: statistics.median(times[max(0, k - 50) : k + 50])  # noqa: E731
    t100, tend = around(100), around(horizon - 51)
    ab: dict[int, list[float]] = {k: [] for k in snapshots}
    for j in range(probes):
        for k in snapshots:
            engine.set_state(None, snapshots[k])
            t = time.perf_counter()
            engine.step(acts[j % 16])
            ab[k].append(time.perf_counter() - t)
    a100, aend = statistics.median(ab[100]), statistics.median(ab[horizon - 1])
    return {
        "steps": horizon,
        "step_ms_at_100": t100 * 1e3,
        f"step_ms_at_{horizon}": tend * 1e3,
        "ratio": tend / t100,
        "ab_step_ms_from_step_100": a100 * 1e3,
        f"ab_step_ms_from_step_{horizon}": aend * 1e3,
        "ab_ratio": aend / a100,
        "rss_mb_at_100": rss.get(100, 0.0),
        "rss_mb_at_1000": rss.get(1000, 0.0),
        f"rss_mb_at_{horizon}": rss.get(horizon, 0.0),
        "cache_bytes": engine.cache.nbytes(),
    }


def bench_dtype(model: Model, batch: int, args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    for dtype in ("float32", "bfloat16"):
        lat = time_steps(make_engine(model, 1, dtype), model, args.steps)
        thr = time_steps(make_engine(model, batch, dtype), model, steps_for(batch, args.steps))
        rows.append(
            {"dtype": dtype, "p50_ms_batch1": percentile(lat, 50) * 1e3, f"steps_per_s_batch{batch}": batch / statistics.median(thr)}
        )
    return rows


def bench_twin(model: Model, batches: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    from worldgym.envs.twins import PixelTwin

    name = model.config.real_twin
    if not name:
        return []
    ae = model.config.autoencoder
    rows = []
    for b in batches:
        envs = [PixelTwin(name, ae.frame_height, ae.frame_width) for _ in range(b)]
        for i, e in enumerate(envs):
            e.reset(seed=i)
            e.action_space.seed(i)
        n = steps_for(b, args.steps)
        t = time.perf_counter()
        for _ in range(n):
            for e in envs:
                _, _, term, trunc, _ = e.step(e.action_space.sample())
                if term or trunc:
                    e.reset()
        rows.append({"batch": b, "pixels_steps_per_s": b * n / (time.perf_counter() - t)})
        for e in envs:
            e.close()
    return rows


# the engine's targets (DESIGN.md section 6), checked by `check_targets` against one run's figures
TARGETS = {
    "p50_ms": 2.0,  # one env, pixels out
    "p99_ms": 4.0,
    "steps_per_s_256": 5000.0,  # 256 envs, pixels out
    "latents_steps_per_s_256": 15000.0,  # 256 envs, latents out
    "twin_ratio": 3.0,  # against the real twin's pixel throughput at the same batch
    "cache_speedup": 4.0,  # a cached step against recomputing the window
    "horizon_ratio": 0.05,  # step time at the end of the horizon within 5 % of step 100
}


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets a report's sections measured: rows of what, target, measured figure(s) and met.

    Throughput is judged at batch 256 (the target's batch) when the run measured it, in the
    default dtype (the throughput section; reports without a dtype are float32) and in bfloat16
    (the dtype section, which runs at the largest batch: judged when that is 256); the twin
    ratio, a batched target, at 256 (or the largest batch both sections measured) in the
    default dtype; the cache speed-up per batch (the target names no batch); the
    horizon by its A/B ratio of steps from snapshots (robust to the machine's load), and
    memory by the resident set at step 1,000 and at the end.
    """
    rows: list[dict[str, Any]] = []

    def add(what: str, target: str, measured: float, met: bool) -> None:
        rows.append({"what": what, "target": target, "measured": round(float(measured), 3), "met": bool(met)})

    if "latency" in report:
        lat = report["latency"]
        add("one env p50 ms", f"<= {TARGETS['p50_ms']:g}", lat["p50_ms"], lat["p50_ms"] <= TARGETS["p50_ms"])
        add("one env p99 ms", f"<= {TARGETS['p99_ms']:g}", lat["p99_ms"], lat["p99_ms"] <= TARGETS["p99_ms"])
    goal = TARGETS["steps_per_s_256"]
    for r in report.get("throughput", []):
        if r["batch"] == 256:
            dtype = f"{r['dtype']} (the default)" if "dtype" in r else "float32"
            add(f"256 envs, pixels, {dtype}, env-steps/s", f">= {goal:g}", r["pixels_steps_per_s"], r["pixels_steps_per_s"] >= goal)
            if "latents_steps_per_s" in r:
                latents = TARGETS["latents_steps_per_s_256"]
                add(f"256 envs, latents, {dtype}, env-steps/s", f">= {latents:g}", r["latents_steps_per_s"], r["latents_steps_per_s"] >= latents)
    for r in report.get("dtype", []):
        key = "steps_per_s_batch256"
        if r["dtype"] == "bfloat16" and key in r:
            add("256 envs, pixels, bfloat16 (the dtype section), env-steps/s", f">= {goal:g}", r[key], r[key] >= goal)
    twin = {r["batch"]: r["pixels_steps_per_s"] for r in report.get("twin", [])}
    both = [r for r in report.get("throughput", []) if twin.get(r["batch"], 0) > 0]
    if both:  # a batched target: at 256, or else the largest batch both measured
        r = next((r for r in both if r["batch"] == 256), max(both, key=lambda r: r["batch"]))
        ratio = r["pixels_steps_per_s"] / twin[r["batch"]]
        what = f"{r['dtype'] + ' (the default)' if 'dtype' in r else 'float32'} vs the real twin at batch {r['batch']}"
        add(what, f">= {TARGETS['twin_ratio']:g}x", ratio, ratio >= TARGETS["twin_ratio"])
    for r in report.get("cache", []):
        what = f"cache vs recomputing window {r['window']}, batch {r['batch']}"
        add(what, f">= {TARGETS['cache_speedup']:g}x", r["speedup"], r["speedup"] >= TARGETS["cache_speedup"])
    if "horizon" in report:
        h = report["horizon"]
        add(f"step time at step {h['steps']} / step 100 (A/B)", f"within {TARGETS['horizon_ratio']:.0%}", h["ab_ratio"],
            abs(h["ab_ratio"] - 1.0) <= TARGETS["horizon_ratio"])  # fmt: skip
        grown = h[f"rss_mb_at_{h['steps']}"] - h["rss_mb_at_1000"]
        add(f"resident memory growth, step 1,000 to {h['steps']} (MiB)", "flat (< 1 MiB)", grown, grown < 1.0)
    return rows


def describe_choice(choice: dict[str, Any]) -> str:
    """How ``dtype="auto"`` was resolved (`choose_dtype`'s record), in a few words."""
    if choice["how"] == "measured":
        ms = choice["step_ms"]
        return f"measured: one step {ms['float32']:.1f} ms float32, {ms['bfloat16']:.1f} ms bfloat16"
    if choice["how"] == AUTO_DTYPE_ENV:
        return f"set by {AUTO_DTYPE_ENV}"
    return "by the CPU's flags" if choice["how"] == "hardware" else "requested"


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = SECTIONS if args.sections == "all" else tuple(s.strip() for s in args.sections.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise UserError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS} or 'all'")
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes must be a comma list of ints, e.g. 1,16,256; got {args.batch_sizes!r}") from None
    model, source = load_model(args.model)
    cpu = cpu_summary()
    report: dict[str, Any] = {
        "model": source,
        "parameters": model.num_parameters(),
        "machine": {
            "cpu": cpu["model"],
            "cpu_flags": cpu["flags"],  # the relevant ones (hardware.RELEVANT_FLAGS), present or not
            "amx": cpu["amx"],
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            # other work on the cores moves every figure (with both cores busy, 2 threads made one env 100x slower)
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "sampler_steps": model.config.sampler.steps,
    }
    print(f"model {source}: {model.num_parameters():,} parameters, sampler {model.config.sampler.steps} step(s)")
    have = " ".join(f if on else f"no-{f}" for f, on in cpu["flags"].items())
    print(f"cpu: {cpu['model']}, {os.cpu_count()} cores; flags: {have}")
    print(f"machine: {report['machine']}")
    if "latency" in sections:
        r = report["latency"] = bench_latency(model, args)
        print(f"\nlatency, 1 env, pixels out: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  mean {r['mean_ms']:.2f} ms  "
              f"({r['aten_calls_per_step']:.0f} aten calls a step)")
    if "throughput" in sections:
        report["throughput"] = bench_throughput(model, batches, args)
        print("\nthroughput     batch   pixels steps/s   latents steps/s   step ms (pixels)   dtype (\"auto\": how chosen)")
        for r in report["throughput"]:
            print(f"{'':14s}{r['batch']:6d}   {r['pixels_steps_per_s']:14.0f}   {r['latents_steps_per_s']:15.0f}   "
                  f"{r['pixels_step_ms']:16.2f}   {r['dtype']} ({describe_choice(r['dtype_choice'])})")
    if "cache" in sections:
        report["cache"] = bench_cache(model, batches, args)
        print("\ncache vs recompute   batch   cached ms   recompute ms   speed-up")
        for r in report["cache"]:
            print(f"{'':20s}{r['batch']:6d}   {r['cached_ms']:9.2f}   {r['recompute_ms']:12.2f}   {r['speedup']:7.2f}x")
    if "horizon" in sections:
        r = report["horizon"] = bench_horizon(model, args.horizon)
        print(f"\nhorizon: {json.dumps(r)}")
    if "dtype" in sections:
        report["dtype"] = bench_dtype(model, max(batches), args)
        print("\ndtype:")
        for r in report["dtype"]:
            print(f"  {json.dumps(r)}")
        choices = {str(b): choose_dtype(model, b, torch.device("cpu")) for b in (1, max(batches))}
        report["dtype_auto"] = {b: c["dtype"] for b, c in choices.items()}
        report["dtype_auto_choice"] = choices
        print(f"  dtype=\"auto\" on this machine: {report['dtype_auto']} (batch -> dtype); "
              + "; ".join(f"batch {b}: {describe_choice(c)}" for b, c in choices.items()))
    if "twin" in sections:
        report["twin"] = bench_twin(model, batches, args)
        print("\nreal twin      batch   pixels steps/s")
        for r in report["twin"]:
            print(f"{'':14s}{r['batch']:6d}   {r['pixels_steps_per_s']:14.0f}")
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        print(f"\nload average (1, 5, 15 min): {report['machine']['load_average']} at the start, "
              f"{report['machine']['load_average_at_end']} at the end")
    report["targets"] = check_targets(report)
    if report["targets"]:
        print("\ntargets (DESIGN.md section 6)")
        for r in report["targets"]:
            print(f"  {'met   ' if r['met'] else 'MISSED'}  {r['what']:58s} {r['target']:>14s}   measured {r['measured']:g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0
