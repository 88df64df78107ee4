"""Judge saturation: the share of the VLM's capacity kept busy while many duels run.

The VLM stand-in serves at most CAPACITY requests at once (like vLLM's --max-num-seqs) with a
fixed latency; the judge stage runs duels in parallel and sends every call through one shared
in-flight limit. Busy share = request-seconds processed ÷ (capacity × span of the judging).
Target ≥ 0.9.

    python benchmarks/judge_saturation.py [--duels N] [--capacity C] [--latency S]
"""

from __future__ import annotations

import argparse

import httpx
from common import cleanup, prompt_images, report, run, service, workdir

RENDER = """\
version: 1
name: bench-judge
provider: local
pods:
  gen-good: {{preset: generator, command: python -m runner404.sim generator --quality good --gpu-capacity 16}}
  gen-poor: {{preset: generator, command: python -m runner404.sim generator --quality poor --gpu-capacity 16}}
  renderer: {{preset: renderer, command: python -m runner404.sim renderer}}
  judge: {{preset: judge, url: "{vlm}"}}
prompts:
  set: {{file: prompts.json}}
stages:
  good: {{uses: generate, pod: gen-good, prompts: set}}
  poor: {{uses: generate, pod: gen-poor, prompts: set}}
  render-good: {{uses: render, pod: renderer, input: out/good, img_size: 64, concurrency: 4}}
  render-poor: {{uses: render, pod: renderer, input: out/poor, img_size: 64, concurrency: 4}}
  duel:
    uses: judge
    pod: judge
    prompts: set
    seed: 1
    left: out/render-poor
    right: out/render-good
    concurrency: {concurrency}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duels", type=int, default=256)
    parser.add_argument("--capacity", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=None, help="duels at once (default: the stage's)")
    args = parser.parse_args()
    folder = workdir("judge")
    # the stand-in runs as its own process, as vLLM does: it must not share our interpreter
    with service("vlm", "--capacity", str(args.capacity), "--latency", str(args.latency)) as url:
        prompt_images(folder, args.duels)
        concurrency = args.concurrency or 16
        (folder / "m.yaml").write_text(RENDER.format(vlm=url, concurrency=concurrency))
        code, _ = run(folder)
        assert code == 0, f"run failed with exit {code}"
        stats = httpx.get(f"{url}/sim/stats").json()
        report("judge_saturation", [
            ("duels", args.duels, ""),
            ("VLM capacity", args.capacity, ""),
            ("VLM latency (s)", args.latency, ""),
            ("duel concurrency", concurrency, ""),
            ("VLM calls", sum(stats["calls_by_label"].values()), ""),
            ("peak in flight", stats["peak_in_flight"], f"≤ {args.capacity}"),
            ("busy share of capacity", stats["busy_share"], "≥ 0.9"),
        ], {"command": "python benchmarks/judge_saturation.py"})
    cleanup(folder)


if __name__ == "__main__":
    main()
