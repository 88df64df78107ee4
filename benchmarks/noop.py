"""No-op rerun: a finished N = 512 manifest (generate → render → judge) run again; wall time.

Every stage is up to date, so the run loads and validates the manifest, plans (checks every
item's recorded outputs and input token on disk), starts no pod and exits. The time is the
median of `--repeat` runs of `404-run run m.yaml` as a child process (start to exit). Target ≤ 0.5 s.

    python benchmarks/noop.py [--folder DIR] [--prompts N] [--quick] [--repeat K]

Without `--folder` (a folder `benchmarks/pipeline.py --keep` left), a finished manifest is made
first with fast stand-ins (no latency, unlimited capacity; untimed).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import report, workdir
from harness import RUNNER, PipelineConfig, last_run_events, prepare_pipeline, run_runner


def finished_folder(prompts: int) -> Path:
    folder = workdir("noop")
    config = PipelineConfig(prompts=prompts, gen_latency=0.0, gen_capacity=16, render_latency=0.0,
                            render_capacity=8, vlm_latency=0.0, vlm_capacity=32)
    prepare_pipeline(folder, config)
    first = run_runner(folder, timeout=1800)
    if first.code != 0:
        raise RuntimeError(f"making the finished manifest failed ({first.code}): {first.stderr[-2000:]}")
    return folder


def profile(folder: Path) -> list[str]:
    """The top of a cProfile of one no-op run (in-process, cumulative time)."""
    code = ("import cProfile, pstats, io, sys\n"
            "from runner404.cli.run import main\n"
            "from runner404.cli.environment import Environment\n"
            "env = Environment(stdout=io.StringIO(), stderr=io.StringIO())\n"
            "p = cProfile.Profile(); p.enable(); main(['run', 'm.yaml'], env); p.disable()\n"
            "s = io.StringIO(); pstats.Stats(p, stream=s).sort_stats('cumulative').print_stats(25)\n"
            "print(s.getvalue())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120)
    return [line for line in done.stdout.splitlines() if line.strip()][:45]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="a finished pipeline folder (m.yaml) to rerun")
    parser.add_argument("--prompts", type=int, default=None, help="N (default 512; 64 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one no-op run")
    args = parser.parse_args()
    made = args.folder is None
    folder = args.folder or finished_folder(args.prompts or (64 if args.quick else 512))
    walls, codes = [], []
    for _ in range(max(1, args.repeat)):
        result = run_runner(folder, "run", "m.yaml", "--progress", "plain", timeout=120)
        walls.append(result.wall)
        codes.append(result.code)
    events = last_run_events(folder)
    names = [e["event"] for e in events]
    skipped = names.count("stage_skipped")
    items = sum(s.get("items", 0) for e in events if e["event"] == "run_started" for s in e["stages"])
    # from the run log: what follows loading and planning (the stages' skips and the teardown)
    in_run = events[-1]["t"] - events[0]["t"] if events else 0.0
    rows = [
        ("stages skipped", skipped, "all"),
        ("items checked", items, ""),
        ("exit codes", ",".join(map(str, sorted(set(codes)))), "0"),
        ("wall min (s)", min(walls), ""),
        ("run_started → run_finished (s)", in_run, "after load and plan"),
        ("wall median (s)", statistics.median(walls), "≤ 0.5"),
    ]
    extra = {"command": "python benchmarks/noop.py" + (f" --folder {args.folder}" if args.folder else ""),
             "walls": walls, "runner": RUNNER,
             "primary": {"figure": "wall median (s)", "value": statistics.median(walls), "target": 0.5,
                         "higher_is_better": False}}
    if args.profile:
        extra["profile"] = profile(folder)
        print("\n".join(extra["profile"]))
    report("noop_rerun", rows, extra)
    if made:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
