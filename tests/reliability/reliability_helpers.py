"""Shared pieces of the reliability suite: bounded subprocess runs of 404-run, the run log, the
ledger, file trees, peak memory, and small loopback servers (a fault proxy, hostile generators).

Every wait here is bounded in time and every loop in count; every server listens on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from runner404 import png

RUNNER = str(Path(sys.executable).parent / "404-run")
PYTHON = sys.executable
STATE = ".runner404"
POSITIONED = r"^\S[^\n]*:\d+:\d+: error: "  # file:line:col: error: message


# -- runs -------------------------------------------------------------------------------------

@dataclass
class Done:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_kb: int = 0  # the runner's own peak (VmHWM), when sampled


def runner_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TARGON_API_KEY", "TARGON_API_URL")}
    env.update({"NO_COLOR": "1", "COLUMNS": "100"})
    env.update(extra or {})
    return env


def start(folder: Path, *args: str, env: dict | None = None, manifest: str = "m.yaml") -> subprocess.Popen:
    """`404-run run m.yaml --progress plain ARGS` in its own session (so a timeout can end it all)."""
    return subprocess.Popen([RUNNER, "run", manifest, "--progress", "plain", *args], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=runner_env(env),
                            start_new_session=True)


def finish(process: subprocess.Popen, timeout: float, what: str = "404-run") -> Done:
    """Wait for a started run; a run that outlives `timeout` is a hang: killed, and the test fails."""
    started = time.monotonic()
    sampler = PeakSampler(process.pid)
    sampler.start()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate(timeout=30)
        raise AssertionError(f"{what} hung: still running after {timeout:g}s\nstdout:\n{out[-3000:]}\n"
                             f"stderr:\n{err[-3000:]}") from None
    finally:
        peak = sampler.stop()
    return Done(process.returncode, out, err, time.monotonic() - started, peak)


def run(folder: Path, *args: str, env: dict | None = None, timeout: float = 90, manifest: str = "m.yaml") -> Done:
    return finish(start(folder, *args, env=env, manifest=manifest), timeout)


def cli(folder: Path, argv: list[str], *, env: dict | None = None, timeout: float = 60,
        memory_limit: int | None = None) -> Done:
    """Any 404-run command line as a bounded child process (optionally under an address-space cap)."""

    def limit() -> None:
        os.setsid()
        if memory_limit:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    process = subprocess.Popen([RUNNER, *argv], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=runner_env(env), preexec_fn=limit)
    return finish(process, timeout, f"404-run {' '.join(argv)}")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class PeakSampler(threading.Thread):
    """The peak RSS (VmHWM) of one process, read from /proc until it exits."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as handle:
                    for line in handle:
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]))
            except OSError:
                return
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=5)
        return self.peak


def assert_clean_output(done: Done) -> None:
    """No traceback and no internal error, whatever the exit code."""
    for text in (done.stdout, done.stderr):
        assert "Traceback" not in text, text[-3000:]
        assert "internal error" not in text, text[-3000:]


# -- the run log, the ledger, files ---------------------------------------------------------------

def events(folder: Path) -> list[dict]:
    runs = []
    for log in (folder / STATE / "runs").glob("*/runner.jsonl"):
        try:
            records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):  # a line being written right now
            continue
        if records:
            runs.append(records)
    return [record for records in sorted(runs, key=lambda r: r[0]["t"]) for record in records]


def run_events(folder: Path, run_id: str | None = None) -> list[dict]:
    """The events of one run (the latest by default)."""
    found: list[dict] = []
    for record in events(folder):
        if record["event"] == "run_started":
            current = record["run"]
            if run_id is None or current == run_id:
                found = []
        found.append(record)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def query(folder: Path, sql: str, *params) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"{(folder / STATE / 'state.sqlite').resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, hidden leftovers included (relative path -> bytes)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def digests(folder: Path) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in tree(folder).items()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def gone(pid: int) -> bool:
    """No process at all, not even a zombie waiting to be reaped."""
    return not os.path.exists(f"/proc/{pid}")


def local_pod_pids(folder: Path) -> list[int]:
    return [int(r["uid"].removeprefix("local-")) for r in query(folder, "SELECT uid FROM pods")
            if r["uid"].startswith("local-")]


# -- inputs -----------------------------------------------------------------------------------

def prompt_images(folder: Path, count: int, size: int = 32) -> list[str]:
    """`count` prompt images (a coloured square on white) and prompts.json listing them."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    prompts, stems = [], []
    for i in range(count):
        rgb = bytes(((i * 67) % 200 + 40, (i * 131) % 200 + 40, (i * 29) % 200 + 40))
        lo, hi = size // 4, 3 * size // 4
        pixels = b"".join(rgb if lo <= x < hi and lo <= y < hi else b"\xff\xff\xff"
                          for y in range(size) for x in range(size))
        stem = f"p{i:03d}"
        (images / f"{stem}.png").write_bytes(png.encode(size, size, pixels))
        prompts.append({"stem": stem, "image_url": f"images/{stem}.png"})
        stems.append(stem)
    (folder / "prompts.json").write_text(json.dumps({"prompts": prompts, "seed": 42}))
    return stems


def write_modules(folder: Path, count: int) -> list[str]:
    """`count` valid three.js modules `m000.js`, ... (for render-only manifests)."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = ["cc3322", "22aa44", "3344dd", "ddcc22", "aa22cc", "22cccc"]
    stems = []
    for i in range(count):
        stem = f"m{i:03d}"
        meshes = "\n".join(
            f"  g.add(new THREE.Mesh(new THREE.BoxGeometry(0.{j + 1}, 0.2, 0.2), "
            f"new THREE.MeshStandardMaterial({{color: 0x{colours[(i + j) % len(colours)]}}})));"
            for j in range(1 + i % 3))
        (folder / f"{stem}.js").write_text(
            f"export default function generate(THREE) {{\n  const g = new THREE.Group();\n{meshes}\n  return g;\n}}\n")
        stems.append(stem)
    return stems


# -- stand-ins as child processes -----------------------------------------------------------------

class Service:
    """`python -m runner404.sim NAME FLAGS` as a child process on a free loopback port."""

    def __init__(self, name: str, *flags: str, cwd: Path | None = None):
        self.process = subprocess.Popen([PYTHON, "-m", "runner404.sim", name, "--port", "0", *flags],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd,
                                        start_new_session=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the {name} stand-in did not start: {line!r}")
        self.url = line.split()[-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- a fault-injecting reverse proxy ----------------------------------------------------------------

class FaultProxy:
    """A loopback reverse proxy in front of a stand-in, injecting faults the stand-ins lack:

    - `burst`: a list of (first, last) request numbers (1-based, counted over the paths in
      `paths`) answered `503` without reaching the service: 5xx in bursts;
    - `slow_body`: responses to `paths` trickle out `chunk` bytes every `pause` seconds.
    Other requests pass through unchanged.
    """

    def __init__(self, target: str, *, paths: tuple[str, ...] = (), burst: list[tuple[int, int]] | None = None,
                 slow_body: bool = False, chunk: int = 2048, pause: float = 0.02):
        self.target = target.removeprefix("http://").rstrip("/")
        self.paths, self.burst, self.slow_body = paths, burst or [], slow_body
        self.chunk, self.pause = chunk, pause
        self.count = 0
        self.injected = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                watched = any(path == p or path.startswith(p) for p in proxy.paths)
                if watched:
                    with proxy.lock:
                        proxy.count += 1
                        number = proxy.count
                    if any(first <= number <= last for first, last in proxy.burst):
                        with proxy.lock:
                            proxy.injected += 1
                        payload = b'{"error": "injected burst"}'
                        self.send_response(503)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                upstream = http.client.HTTPConnection(proxy.target, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "connection", "keep-alive")}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    status, reply_headers = response.status, response.getheaders()
                finally:
                    upstream.close()
                self.send_response(status)
                for key, value in reply_headers:
                    if key.lower() not in ("transfer-encoding", "content-length", "connection", "keep-alive"):
                        self.send_header(key, value)
                if status in (204, 304):
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if watched and proxy.slow_body:
                    try:
                        for at in range(0, len(data), proxy.chunk):
                            self.wfile.write(data[at:at + proxy.chunk])
                            self.wfile.flush()
                            time.sleep(proxy.pause)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True  # the client gave up on the trickle: expected
                else:
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
