"""Helpers shared by the benchmark scripts: prompt sets, renders, CLI runs, result tables."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner404 import png  # noqa: E402
from runner404.cli.run import main as run404  # noqa: E402


def workdir(name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"runner404-bench-{name}-"))
    return folder


def prompt_images(folder: Path, count: int) -> Path:
    """`count` small prompt images (a coloured square on white) and a prompts.json for them."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    prompts = []
    for i in range(count):
        rgb = bytes(((i * 67) % 200 + 40, (i * 131) % 200 + 40, (i * 29) % 200 + 40))
        size, lo, hi = 64, 16, 48
        pixels = b"".join((rgb if lo <= x < hi and lo <= y < hi else b"\xff\xff\xff")
                          for y in range(size) for x in range(size))
        (images / f"p{i:04d}.png").write_bytes(png.encode(size, size, pixels))
        prompts.append({"stem": f"p{i:04d}", "image_url": f"images/p{i:04d}.png"})
    (folder / "prompts.json").write_text(json.dumps({"prompts": prompts, "seed": 7}))
    return folder / "prompts.json"


def run(folder: Path, *args: str) -> tuple[int, float]:
    """`404-run run m.yaml ARGS` in-process, quietly; returns (exit code, seconds)."""
    devnull = open(os.devnull, "w")
    from runner404.cli.environment import Environment

    env = Environment(stdout=devnull, stderr=devnull, cwd=folder, stdout_isatty=False, stderr_isatty=False)
    started = time.perf_counter()
    code = run404(["run", "m.yaml", *args], env)
    return code, time.perf_counter() - started


def report(name: str, rows: list[tuple[str, object, str]], extra: dict | None = None) -> dict:
    """Print a table of (figure, value, target) and write benchmarks/results/<name>.json."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{name}")
    for figure, value, target in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {figure:<{width}}  {shown:>10}  {target}")
    result = {"benchmark": name, "figures": {r[0]: r[1] for r in rows}, "targets": {r[0]: r[2] for r in rows},
              **(extra or {})}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@contextlib.contextmanager
def service(name: str, *flags: str):
    """`python -m runner404.sim NAME FLAGS` as a child process; yields its URL."""
    process = subprocess.Popen([sys.executable, "-m", "runner404.sim", name, "--port", "0", *flags],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{name} stand-in did not start: {line!r}")
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def cleanup(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
