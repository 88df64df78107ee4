"""Shared pieces of the process-level benchmarks: the runner as a child process, sampled from
/proc (wall time, CPU, peak RSS of the runner alone and of its process tree), the run log, and
the generate → render → judge pipeline on local stand-in pods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, prompt_images

RUNNER = str(Path(sys.executable).parent / "404-run")
STANDIN = str(ROOT / "benchmarks" / "standin.py")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- /proc sampling ---------------------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])  # kB
    except OSError:
        pass
    return out


def _cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime of the process itself
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo and len(pids) < 256:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


@dataclass
class Sample:
    """What the sampler saw of a process: its own peak RSS (VmHWM), its CPU seconds, and the
    peak of the summed RSS of it and all its descendants (local pods included)."""

    runner_peak_kb: int = 0
    tree_peak_kb: int = 0
    runner_cpu: float = 0.0
    samples: int = 0


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.result = pid, interval, Sample()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            status = _status(self.pid)
            if not status:
                break
            self.result.runner_peak_kb = max(self.result.runner_peak_kb, status.get("VmHWM", 0))
            cpu = _cpu(self.pid)
            if cpu is not None:
                self.result.runner_cpu = cpu
            total = sum(_status(p).get("VmRSS", 0) for p in _tree(self.pid))
            self.result.tree_peak_kb = max(self.result.tree_peak_kb, total)
            self.result.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> Sample:
        self._stop_event.set()
        self.join(timeout=5)
        return self.result


@dataclass
class Run:
    code: int
    wall: float
    sample: Sample
    stdout: str
    stderr: str
    ru_maxrss_kb: int = 0  # wait4: max RSS of the runner or any descendant it reaped


def run_runner(folder: Path, *args: str, env: dict | None = None, timeout: float = 900,
               command: list[str] | None = None) -> Run:
    """`404-run ARGS` (default `run m.yaml --progress json`) as a child process, sampled."""
    argv = command or [RUNNER, *(args or ("run", "m.yaml", "--progress", "json"))]
    out_path, err_path = folder / ".bench-stdout", folder / ".bench-stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=err,
                                   env={**os.environ, **(env or {})})
        sampler = Sampler(process.pid)
        sampler.start()
        deadline = started + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    sample = sampler.stop()
    return Run(process.returncode, wall, sample, out_path.read_text(), err_path.read_text(),
               usage.ru_maxrss if usage else 0)


def last_run_events(folder: Path, state: str = ".runner404") -> list[dict]:
    logs = sorted((folder / state / "runs").glob("*/runner.jsonl"))
    if not logs:
        return []
    return [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]


def stage_windows(events: list[dict]) -> dict[str, tuple[float, float]]:
    started = {e["stage"]: e["t"] for e in events if e["event"] == "stage_started"}
    return {e["stage"]: (started[e["stage"]], e["t"]) for e in events
            if e["event"] == "stage_finished" and e["stage"] in started}


def pod_starts(events: list[dict]) -> dict[str, float]:
    """Seconds from pod_starting to pod_ready, per pod."""
    begun = {e["pod"]: e["t"] for e in events if e["event"] == "pod_starting"}
    return {e["pod"]: e["t"] - begun[e["pod"]] for e in events if e["event"] == "pod_ready" and e["pod"] in begun}


# -- the pipeline ---------------------------------------------------------------------------

LEADER = """\
version: 1
name: bench-leader
provider: local
pods:
  generator: {{preset: generator, command: python -m runner404.sim generator --quality poor --gpu-capacity 16}}
  renderer: {{preset: renderer, command: python -m runner404.sim renderer}}
prompts:
  set: {{file: prompts.json}}
stages:
  leader-js: {{uses: generate, pod: generator, prompts: set, seed: 3, poll_interval: 0.1s, output: leader-js}}
  leader: {{uses: render, pod: renderer, input: leader-js, img_size: {img_size}, concurrency: 8, output: leader}}
"""

PIPELINE = """\
version: 1
name: bench-pipeline
provider: local
pods:
  generator:
    preset: generator
    command: python {standin} generator --stats-file {stats}/generator.json --quality good --prompt-latency {gen_latency} --gpu-capacity {gen_capacity}{fixed}
  renderer:
    preset: renderer
    command: python {standin} renderer --stats-file {stats}/renderer.json --capacity {render_capacity} --latency {render_latency}{fixed}
  judge:
    preset: judge
    command: python {standin} vlm --stats-file {stats}/vlm.json --capacity {vlm_capacity} --latency {vlm_latency}{fixed}
prompts:
  set: {{file: prompts.json}}
stages:
  generate: {{uses: generate, pod: generator, prompts: set, seed: 7, poll_interval: 0.1s}}
  render: {{uses: render, pod: renderer, input: "${{{{ stages.generate.outputs.dir }}}}", img_size: {img_size}}}
  duel:
    uses: judge
    pod: judge
    prompts: set
    seed: 1
    left: leader
    right: "${{{{ stages.render.outputs.dir }}}}"
"""


@dataclass
class PipelineConfig:
    prompts: int = 512
    gen_latency: float = 0.02  # seconds per prompt on one generator GPU
    gen_capacity: int = 1  # prompts generated at once
    render_latency: float = 0.05  # seconds a render request holds a renderer slot
    render_capacity: int = 2
    vlm_latency: float = 0.1  # seconds a completion holds a VLM sequence slot
    vlm_capacity: int = 32
    img_size: int = 64
    fixed_service: bool = True  # latency includes the stand-ins' own CPU work (benchmarks/standin.py)
    extra: dict = field(default_factory=dict)


def prepare_pipeline(folder: Path, config: PipelineConfig) -> None:
    """Prompt images, the leader's renders (untimed, with its own state folder), and m.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    prompt_images(folder, config.prompts)
    (folder / "leader.yaml").write_text(LEADER.format(img_size=config.img_size))
    setup = run_runner(folder, command=[RUNNER, "run", "leader.yaml", "--state-dir", ".leader-state",
                                        "--progress", "plain"], timeout=1800)
    if setup.code != 0:
        raise RuntimeError(f"leader renders failed ({setup.code}): {setup.stdout[-2000:]}{setup.stderr[-2000:]}")
    (folder / "m.yaml").write_text(PIPELINE.format(
        standin=STANDIN, stats=folder / "stats", gen_latency=config.gen_latency,
        gen_capacity=config.gen_capacity, render_latency=config.render_latency,
        render_capacity=config.render_capacity, vlm_latency=config.vlm_latency,
        vlm_capacity=config.vlm_capacity, img_size=config.img_size,
        fixed=" --fixed-service" if config.fixed_service else ""))


def stand_in_stats(folder: Path) -> dict[str, dict]:
    found = {}
    for name in ("generator", "renderer", "vlm"):
        path = folder / "stats" / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def fmt_mb(kb: int) -> float:
    return round(kb / 1024, 1)
