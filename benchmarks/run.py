"""Run every benchmark and print one summary table.

Each benchmark is its own script (runnable alone, each prints its table and writes
benchmarks/results/<name>.json); this runs them one after the other as child processes, so no
benchmark shares an interpreter (or a warm cache) with another, then prints the headline figure
of each against its target.

    python benchmarks/run.py [--quick] [--only NAME,...]

--quick uses small N everywhere (a smoke run of a few minutes); the default is the issue's N.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# name -> (script, result file, extra args, quick args)
BENCHMARKS = {
    "startup": ("startup.py", "startup", [], ["--quick"]),
    "pipeline": ("pipeline.py", "pipeline", ["--keep"], ["--quick", "--keep"]),
    "noop": ("noop.py", "noop_rerun", [], ["--quick"]),
    "memory": ("memory.py", "memory", [], ["--quick"]),
    "judge": ("judge_saturation.py", "judge_saturation", [], ["--duels", "64"]),
    "scaleout": ("scaleout.py", "scaleout", [], ["--quick"]),
}
HEADLINES = {  # result file -> (figure, target text, met(value))
    "pipeline": ("bound ÷ wall", "≥ 0.95", lambda v: v >= 0.95),
    "noop_rerun": ("wall median (s)", "≤ 0.5 s", lambda v: v <= 0.5),
    "memory": ("runner peak RSS (MB)", "≤ 150 MB", lambda v: v <= 150),
    "judge_saturation": ("busy share of capacity", "≥ 0.9", lambda v: v >= 0.9),
}


def summary_rows() -> list[tuple[str, str, str, str]]:
    rows = []

    def load(name: str) -> dict | None:
        path = RESULTS / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    start = load("startup")
    if start:
        for figure, value in start["figures"].items():
            if "−" in figure or figure.startswith("python"):
                continue
            rows.append((f"start-up: {figure}", f"{value:.3f}", "≤ 0.2 s", "yes" if value <= 0.2 else "NO"))
        base = start["figures"].get("python -c pass (s)")
        if base is not None:
            rows.append(("start-up: python -c pass (s)", f"{base:.3f}", "baseline", ""))
    for name, (figure, target, met) in HEADLINES.items():
        data = load(name)
        if data and figure in data["figures"]:
            value = data["figures"][figure]
            rows.append((f"{name}: {figure}", f"{value:.3f}" if isinstance(value, float) else str(value), target,
                         "yes" if met(value) else "NO"))
    scale = load("scaleout")
    if scale:
        for replicas, result in scale.get("results", {}).items():
            base = next(iter(scale["results"].values()))["generation"]
            rows.append((f"scale-out: R={replicas} generation (s)", f"{result['generation']:.2f}",
                         f"speed-up {base / result['generation']:.2f} (ideal {replicas})", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N everywhere")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    pipeline_folder = None
    failed = []
    timings = {}
    for name in chosen:
        script, result, extra, quick = BENCHMARKS[name]
        argv = [sys.executable, str(HERE / script), *(quick if args.quick else extra)]
        if name == "noop" and pipeline_folder:  # rerun the finished pipeline instead of making one
            argv = [sys.executable, str(HERE / script), "--folder", pipeline_folder]
        print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=HERE, timeout=3600)
        timings[name] = time.perf_counter() - started
        if done.returncode != 0:
            failed.append(name)
            continue
        if name == "pipeline":
            data = json.loads((RESULTS / "pipeline.json").read_text())
            pipeline_folder = data.get("folder")
    if pipeline_folder and "noop" in chosen:
        import shutil

        shutil.rmtree(pipeline_folder, ignore_errors=True)
    rows = summary_rows()
    print("\nsummary (benchmarks/results/*.json)")
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print("\n  " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    if failed:
        print(f"  failed: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
