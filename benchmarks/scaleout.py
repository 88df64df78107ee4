"""Scale-out: generation wall time with 1, 2 and 4 generator workloads on the stand-in Targon.

The Targon stand-in runs as its own process (benchmarks/standin.py targon) and serves each
workload of image `runner404-sim/generator:good` with a generator of one GPU at `--latency`
seconds per prompt (work included, --fixed-service). The manifest asks for `replicas: R`; the
generate stage splits the N stems round-robin into one shard per workload. Prompt images are
`data:` URLs (a generator on Targon cannot read local files).

Figures per R: the `404-run` wall time (start to exit), the generate stage (pod deploy and
health included), the generation itself (first batch submitted → last item done), and the
speed-up of the generation over R = 1 (ideal: R).

    python benchmarks/scaleout.py [--prompts N] [--quick] [--latency S]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys

from common import ROOT, report, workdir
from harness import STANDIN, last_run_events, pod_starts, run_runner, stage_windows
from runner404 import png

KEY = "bench-scaleout-key"
MANIFEST = """\
version: 1
name: bench-scaleout
secrets:
  targon: {{env: BENCH_TARGON_KEY}}
provider: {{type: targon, api_key: "${{{{ secrets.targon }}}}"}}
pods:
  generator:
    preset: generator
    image: runner404-sim/generator:good
    replicas: {replicas}
    health: {{path: /health, timeout: 60s, interval: 0.1s}}
prompts:
  set: {{file: prompts.json}}
stages:
  generate: {{uses: generate, pod: generator, prompts: set, seed: 7, poll_interval: 0.1s}}
"""


def data_prompts(count: int) -> dict:
    prompts = []
    for i in range(count):
        rgb = ((i * 67) % 200 + 40, (i * 131) % 200 + 40, (i * 29) % 200 + 40)
        size, lo, hi = 32, 8, 24
        pixels = b"".join(bytes(rgb) if lo <= x < hi and lo <= y < hi else b"\xff\xff\xff"
                          for y in range(size) for x in range(size))
        url = "data:image/png;base64," + base64.b64encode(png.encode(size, size, pixels)).decode()
        prompts.append({"stem": f"p{i:04d}", "image_url": url})
    return {"prompts": prompts, "seed": 7}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None, help="N (default 512; 128 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per prompt on one generator")
    parser.add_argument("--replicas", default="1,2,4")
    args = parser.parse_args()
    n = args.prompts or (128 if args.quick else 512)
    counts = [int(r) for r in args.replicas.split(",")]
    root = workdir("scaleout")
    stats = root / "targon-stats.json"
    targon = subprocess.Popen(
        [sys.executable, STANDIN, "targon", "--stats-file", str(stats), "--api-key", KEY, "--url-delay", "0.2",
         "--delete-delay", "0.1", "--fixed-service", "--service-option", f"generator_prompt_latency={args.latency}",
         "--service-option", "generator_gpu_capacity=1"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    results = {}
    try:
        line = targon.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the Targon stand-in did not start: {line!r}")
        url = line.split()[-1]
        prompts = data_prompts(n)
        for replicas in counts:
            folder = root / f"r{replicas}"
            folder.mkdir()
            (folder / "prompts.json").write_text(json.dumps(prompts))
            (folder / "m.yaml").write_text(MANIFEST.format(replicas=replicas))
            result = run_runner(folder, "run", "m.yaml", "--targon-url", url, "--progress", "json",
                                env={"BENCH_TARGON_KEY": KEY}, timeout=900)
            if result.code != 0:
                raise RuntimeError(f"R={replicas} failed ({result.code}): {result.stderr[-2000:]}")
            events = last_run_events(folder)
            begin, end = stage_windows(events)["generate"]
            submitted = min(e["t"] for e in events if e["event"] == "batch_started")
            last_done = max(e["t"] for e in events if e["event"] == "item_done")
            results[replicas] = {"wall": result.wall, "stage": end - begin, "generation": last_done - submitted,
                                 "pod_start": max(pod_starts(events).values(), default=0.0)}
    finally:
        targon.terminate()
        targon.wait(timeout=30)
    base = results[counts[0]]["generation"]
    rows = [("prompts (N)", n, ""), ("seconds per prompt per workload", args.latency, "")]
    for replicas, r in results.items():
        ideal = n * args.latency / replicas
        rows += [
            (f"R={replicas} wall (s)", r["wall"], ""),
            (f"R={replicas} generate stage (s)", r["stage"], "incl. deploy + health"),
            (f"R={replicas} generation (s)", r["generation"], f"ideal {ideal:.2f}"),
            (f"R={replicas} speed-up", base / r["generation"] * counts[0], f"ideal {replicas}"),
        ]
    top = counts[-1]
    report("scaleout", rows, {
        "command": "python benchmarks/scaleout.py" + (" --quick" if args.quick else ""), "results": results,
        "primary": {"figure": f"R={top} speed-up", "value": base / results[top]["generation"] * counts[0],
                    "target": None, "higher_is_better": True}})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
