"""Session-wide isolation: a temporary HOME and caches, no colour, 80 columns, no real keys.

Every command runs through `run_cli`, which passes an Environment (streams, environment
variables, working directory) into the CLI's `main`, so no test needs monkeypatching.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner404.cli import classic, run
from runner404.cli.environment import Environment

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MANIFESTS = ROOT / "manifests"
# Variables that must never leak from a developer's shell into a test.
_SCRUB = ("TARGON_API_KEY", "TARGON_API_URL", "RUNNER404_COMPETITION_URL", "BT_CHAIN_ENDPOINT",
          "BT_WALLET_PASSWORD", "HF_TOKEN", "FORCE_COLOR", "CLICOLOR_FORCE")


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    for name in _SCRUB:
        os.environ.pop(name, None)
    os.environ.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local/share"),
        "NO_COLOR": "1", "COLUMNS": "80", "LINES": "40", "TERM": "dumb", "LC_ALL": "C.UTF-8",
    })
    yield home
    os.environ.clear()
    os.environ.update(saved)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(argv: list[str], *, cwd: Path = ROOT, environ: dict[str, str] | None = None,
            tool: str = "404-run", stdin: str = "") -> Result:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(stdin), stdout=out, stderr=err,
                      environ={**os.environ, **(environ or {})}, cwd=cwd,
                      stdin_isatty=False, stdout_isatty=False, stderr_isatty=False)
    main = run.main if tool == "404-run" else classic.main
    code = main(argv, env)
    return Result(int(code), out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


def stop_process(proc) -> None:
    """Terminate a stand-in started as a subprocess (kill it if it lingers) and close its pipes."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


@contextlib.contextmanager
def serve_folder(folder: Path):
    """A quiet loopback static file server of `folder` (a CDN, a competition repo, prompt images);
    yields its base URL."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
