"""Memory: peak RSS of the runner during an N = 1024 generate → render → judge run.

The runner is a child process sampled from /proc every 50 ms: its own peak RSS is VmHWM (the
kernel's high-water mark of that one process: the local pods, its children, are NOT included);
the summed RSS of the runner and all its descendants (the three stand-in pods included) is
reported beside it. The stand-ins have no latency here (memory does not depend on speed, and
the run stays short); the VLM answers from hashes (benchmarks/standin.py --fixed-service).
Target ≤ 150 MB for the runner process.

    python benchmarks/memory.py [--prompts N] [--quick]
"""

from __future__ import annotations

import argparse
import shutil

from common import report, workdir
from harness import PipelineConfig, fmt_mb, last_run_events, prepare_pipeline, run_runner, stage_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None, help="N (default 1024; 256 with --quick)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = args.prompts or (256 if args.quick else 1024)
    folder = workdir("memory")
    config = PipelineConfig(prompts=n, gen_latency=0.0, gen_capacity=16, render_latency=0.0, render_capacity=8,
                            vlm_latency=0.01, vlm_capacity=32)
    prepare_pipeline(folder, config)
    result = run_runner(folder, timeout=1800)
    if result.code != 0:
        raise RuntimeError(f"run failed ({result.code}): {result.stderr[-3000:]}")
    windows = stage_windows(last_run_events(folder))
    files = sum(1 for p in (folder / "out").rglob("*") if p.is_file())
    report("memory", [
        ("prompts (N)", n, ""),
        ("output files", files, ""),
        ("wall (s)", result.wall, ""),
        ("stage seconds", ", ".join(f"{k} {b - a:.1f}" for k, (a, b) in windows.items()), ""),
        ("sampler readings", result.sample.samples, "every 50 ms"),
        ("runner + pods peak RSS (MB)", fmt_mb(result.sample.tree_peak_kb), "summed over the tree"),
        ("runner peak RSS (MB)", fmt_mb(result.sample.runner_peak_kb), "≤ 150 (runner only, no children)"),
    ], {"command": "python benchmarks/memory.py" + (" --quick" if args.quick else ""),
        "wait4_maxrss_mb": fmt_mb(result.ru_maxrss_kb),
        "primary": {"figure": "runner peak RSS (MB)", "value": fmt_mb(result.sample.runner_peak_kb), "target": 150,
                    "higher_is_better": False}})
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
