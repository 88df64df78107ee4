"""Pipeline efficiency: N prompts through generate → render → judge on stand-ins with fixed
latencies and capacities; the capacity lower bound on wall time ÷ the measured wall time.

The stand-ins run as local pods (their own processes, `benchmarks/standin.py`, which records
how their capacity was used). The judge's left side is a "leader" set rendered beforehand
(untimed, like round-eval.yaml's published leader files); the timed run is the evaluation of one
generator: generate N modules, render them, judge N duels.

The bound. Each stage can go no faster than its stand-in's capacity allows, and a stage starts
when the stage it reads from is complete (render reads generate's folder, the judge reads the
render folder), so
    T_generate = N × gen_latency / gen_capacity            (every prompt occupies one GPU slot)
    T_render   = ceil(3N / render_capacity) × render_latency  (3 requests per stem: white set,
                                                            gray set, grid; each holds a slot)
    T_judge    = ceil(C / vlm_capacity) × vlm_latency      (C = the VLM calls the duels made,
                                                            counted by the stand-in; the duel
                                                            logic fixes C for given inputs)
    bound      = T_generate + T_render + T_judge
Efficiency = bound ÷ measured wall time of the whole `404-run run` (process start to exit: start-
up, pod starts, the three stages, teardown). Target ≥ 0.95.

    python benchmarks/pipeline.py [--prompts N] [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from common import report, workdir
from harness import (PipelineConfig, fmt_mb, last_run_events, pod_starts, prepare_pipeline, run_runner,
                     stage_windows, stand_in_stats)


def bound_parts(config: PipelineConfig, vlm_calls: int) -> dict[str, float]:
    n = config.prompts
    return {
        "generate": n * config.gen_latency / config.gen_capacity,
        "render": math.ceil(3 * n / config.render_capacity) * config.render_latency,
        "duel": math.ceil(vlm_calls / config.vlm_capacity) * config.vlm_latency,
    }


def measure(folder: Path, config: PipelineConfig) -> dict:
    prepare_pipeline(folder, config)
    result = run_runner(folder, timeout=1800)
    if result.code != 0:
        raise RuntimeError(f"pipeline run failed ({result.code}): {result.stderr[-3000:]}")
    events = last_run_events(folder)
    stats = stand_in_stats(folder)
    calls = sum(stats.get("vlm", {}).get("calls_by_label", {}).values())
    parts = bound_parts(config, calls)
    windows = stage_windows(events)
    started = events[0]["t"]
    finished = events[-1]["t"]
    stage_seconds = {sid: end - begin for sid, (begin, end) in windows.items()}
    return {
        "result": result, "events": events, "stats": stats, "calls": calls, "bound_parts": parts,
        "bound": sum(parts.values()), "stage_seconds": stage_seconds, "pod_starts": pod_starts(events),
        "in_process": finished - started,  # run_started → run_finished, as logged by the runner
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None, help="N (default 512; 64 with --quick)")
    parser.add_argument("--quick", action="store_true", help="N = 64")
    parser.add_argument("--computing-stand-ins", action="store_true",
                        help="stand-ins whose CPU work comes on top of the latency (default: included in it)")
    parser.add_argument("--keep", action="store_true", help="keep the folder (benchmarks/noop.py can reuse it)")
    parser.add_argument("--folder", type=Path, default=None, help="work here instead of a temporary folder")
    args = parser.parse_args()
    config = PipelineConfig(prompts=args.prompts or (64 if args.quick else 512),
                            fixed_service=not args.computing_stand_ins)
    folder = args.folder or workdir("pipeline")
    m = measure(folder, config)
    result, parts, stats = m["result"], m["bound_parts"], m["stats"]
    wall = result.wall
    streaming = max(parts.values())
    rows = [
        ("prompts (N)", config.prompts, ""),
        ("generator: s/prompt × GPUs", f"{config.gen_latency} × {config.gen_capacity}", ""),
        ("renderer: s/request × slots", f"{config.render_latency} × {config.render_capacity}", ""),
        ("VLM: s/call × seqs", f"{config.vlm_latency} × {config.vlm_capacity}", ""),
        ("stand-in service time", "latency incl. CPU" if config.fixed_service else "latency + CPU", ""),
        ("VLM calls (C)", m["calls"], ""),
        ("bound generate (s)", parts["generate"], ""),
        ("bound render (s)", parts["render"], ""),
        ("bound judge (s)", parts["duel"], ""),
        ("bound total (s)", m["bound"], "Σ of the stage bounds"),
        ("measured wall (s)", wall, "404-run process start → exit"),
        ("stage generate (s)", m["stage_seconds"].get("generate", 0.0), "incl. pod start"),
        ("stage render (s)", m["stage_seconds"].get("render", 0.0), "incl. pod start"),
        ("stage judge (s)", m["stage_seconds"].get("duel", 0.0), "incl. pod start"),
        ("outside stages (s)", wall - sum(m["stage_seconds"].values()), "start-up, plan, teardown"),
        ("renderer busy share", stats.get("renderer", {}).get("busy_share") or 0.0, "slot-seconds ÷ (slots × span)"),
        ("renderer mean hold (s)", stats.get("renderer", {}).get("mean_hold") or 0.0,
         f"configured {config.render_latency}"),
        ("VLM busy share", stats.get("vlm", {}).get("busy_share") or 0.0, ""),
        ("VLM mean hold (s)", stats.get("vlm", {}).get("mean_hold") or 0.0, f"configured {config.vlm_latency}"),
        ("runner CPU (s)", result.sample.runner_cpu, ""),
        ("stand-ins CPU (s)", sum(s.get("cpu_seconds", 0.0) for s in stats.values()), "2 cores shared"),
        ("runner peak RSS (MB)", fmt_mb(result.sample.runner_peak_kb), ""),
        ("streaming bound ÷ wall", streaming / wall, "if stages overlapped (they do not)"),
        ("bound ÷ wall", m["bound"] / wall, "≥ 0.95"),
    ]
    report("pipeline", rows, {
        "command": "python benchmarks/pipeline.py" + (" --quick" if args.quick else ""),
        "pod_start_seconds": m["pod_starts"], "stage_seconds": m["stage_seconds"],
        "vlm_calls_by_label": stats.get("vlm", {}).get("calls_by_label", {}),
        "generator_batches": [{k: v for k, v in b.items() if k != "server"}
                              for b in stats.get("generator", {}).get("batches", [])],
        "folder": str(folder) if args.keep else None,
        "primary": {"figure": "bound ÷ wall", "value": m["bound"] / wall, "target": 0.95, "higher_is_better": True},
    })
    if args.keep:
        (folder / "pipeline.json").write_text(json.dumps({"prompts": config.prompts}))
        print(f"  kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
