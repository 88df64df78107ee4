"""Shared pieces of the engine's functional tests: modules to render, manifests, subprocess runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner404.engine.ledger import Ledger

RUNNER = str(Path(sys.executable).parent / "404-run")
COLOURS = ["cc3322", "22aa44", "3344dd", "ddcc22", "aa22cc", "22cccc", "884422", "448822", "ff8800", "0088ff"]


def write_modules(folder: Path, count: int) -> list[str]:
    """`count` valid three.js modules, each with its own colour and primitive count."""
    folder.mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(count):
        stem = f"m{i:03d}"
        boxes = "\n".join(
            f"  g.add(new THREE.Mesh(new THREE.BoxGeometry(0.{j + 1}, 0.2, 0.2), "
            f"new THREE.MeshStandardMaterial({{color: 0x{COLOURS[(i + j) % len(COLOURS)]}}})));"
            for j in range(1 + i % 3))
        (folder / f"{stem}.js").write_text(
            f"export default function generate(THREE) {{\n  const g = new THREE.Group();\n{boxes}\n  return g;\n}}\n")
        stems.append(stem)
    return stems


LOCAL_RENDER = """\
version: 1
name: engine-test
provider: local
pods:
  renderer:
    preset: renderer
    command: python -m runner404.sim renderer {renderer_flags}
    health: {{path: /health, timeout: 30s, interval: 0.05s}}
stages:
  render:
    uses: render
    pod: renderer
    input: js/
    img_size: 32
    concurrency: {concurrency}
    retries: {retries}
    timeout: {timeout}
"""

TARGON_RENDER = """\
version: 1
name: engine-test
secrets:
  targon: {{env: RUNNER404_TEST_TARGON_KEY}}
provider:
  type: targon
  api_key: ${{{{ secrets.targon }}}}
pods:
  renderer:
    preset: renderer
    health: {{path: /health, timeout: {health_timeout}, interval: 0.05s}}
stages:
  render:
    uses: render
    pod: renderer
    input: js/
    img_size: 32
    concurrency: 2
"""


def local_manifest(folder: Path, *, renderer_flags: str = "", concurrency: int = 2, retries: int = 3,
                   timeout: str = "30s", modules: int = 6) -> Path:
    write_modules(folder / "js", modules)
    path = folder / "m.yaml"
    path.write_text(LOCAL_RENDER.format(renderer_flags=renderer_flags, concurrency=concurrency,
                                        retries=retries, timeout=timeout))
    return path


def targon_manifest(folder: Path, *, health_timeout: str = "20s", modules: int = 4) -> Path:
    write_modules(folder / "js", modules)
    path = folder / "m.yaml"
    path.write_text(TARGON_RENDER.format(health_timeout=health_timeout))
    return path


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), hidden leftovers included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def ledger(folder: Path) -> Ledger:
    return Ledger(folder / ".runner404" / "state.sqlite")


def events(folder: Path) -> list[dict]:
    """All events of all runs in the folder, in order."""
    runs = []
    for log in (folder / ".runner404" / "runs").glob("*/runner.jsonl"):
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if records:
            runs.append(records)
    return [record for run in sorted(runs, key=lambda r: r[0]["t"]) for record in run]


def start(folder: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([RUNNER, "run", "m.yaml", "--progress", "plain", *args], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for_event(folder: Path, name: str, count: int = 1, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(e["event"] == name for e in events(folder)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {count} {name} event(s) within {timeout}s")


def interrupt(process: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err
