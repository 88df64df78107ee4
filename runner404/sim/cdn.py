"""A static file server standing in for a miner's CDN, with knobs for what goes wrong there.

`GET`/`HEAD /<path>` serves `<root>/<path>` (never outside `root`; folders and missing files are
404). Which files misbehave is decided per file, by name (`--missing abc,def`, a stem or a file
name) or by a share of the `.js` files drawn from a hash of the `seed` knob and the name, so the
same file misbehaves the same way on every request and in every run:

- `missing`: 404 although the file exists;
- `oversize`: the file padded with a trailing comment to `oversize_bytes` (default 1 MiB + 1 KiB);
- `slow`: held `slow_seconds` before the answer (client timeouts);
- `flaky`: the first `flaky_failures` requests for the file are answered with `fail_status`
  (503 by default), later ones normally (a second try succeeds);
- `redirect`: 302 to `/_redirected/<path>`, which serves the file (the validators' collector
  does not follow redirects).
`--chunked` sends every file without Content-Length, so a client must cap sizes while streaming.
`GET /_sim/stats` returns `{"requests", "by_path"}`. The common knobs (latency, capacity,
fail_rate, drop_rate, stall) apply to every file request.

In tests: `server = start_cdn(root, missing_rate=0.1)`, then `server.url`, `server.stats.by_path`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from runner404.sim.http import Knobs, SimHandler, SimServer

MIB = 1024 * 1024
FAULTS = ("missing", "oversize", "slow", "flaky", "redirect")
REDIRECTED = "/_redirected"


@dataclass
class CdnOptions:
    missing: set[str] = field(default_factory=set)
    missing_rate: float = 0.0
    oversize: set[str] = field(default_factory=set)
    oversize_rate: float = 0.0
    oversize_bytes: int = MIB + 1024
    slow: set[str] = field(default_factory=set)
    slow_rate: float = 0.0
    slow_seconds: float = 30.0
    flaky: set[str] = field(default_factory=set)
    flaky_rate: float = 0.0
    flaky_failures: int = 1
    redirect: set[str] = field(default_factory=set)
    redirect_rate: float = 0.0
    chunked: bool = False


class CdnServer(SimServer):
    root: Path
    options: CdnOptions
    request_queue_size = 128  # a CDN takes many new connections at once (socketserver's default is 5)

    def __init__(self, address: tuple[str, int], root: Path, options: CdnOptions, knobs: Knobs | None = None):
        super().__init__(address, CdnHandler, knobs)
        self.root = root.resolve()
        self.options = options
        self.served: dict[str, int] = {}  # path -> failed answers given so far (flaky)
        self.served_lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        """Quiet about clients that hang up (a download cut off at the size limit, a timeout)."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def fault(self, kind: str, name: str) -> bool:
        """Whether file `name` has fault `kind` (by name, or drawn for `.js` files)."""
        names: set[str] = getattr(self.options, kind)
        stem = name[:-3] if name.endswith(".js") else name
        if name in names or stem in names:
            return True
        rate: float = getattr(self.options, f"{kind}_rate")
        if rate <= 0 or not name.endswith(".js"):
            return False
        digest = hashlib.sha256(f"{self.knobs.seed}:{kind}:{name}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2 ** 32 < rate

    def faulty(self, kind: str, names: list[str]) -> list[str]:
        """Which of `names` have fault `kind` (what a test expects to go wrong)."""
        return [n for n in names if self.fault(kind, n)]


class CdnHandler(SimHandler):
    server: CdnServer

    def route(self, method: str, path: str) -> str | None:
        if path == "/_sim/stats" and method == "GET":
            return "stats"
        return "file" if method in ("GET", "HEAD") else None

    def do_route_stats(self) -> None:
        stats = self.server.stats
        with stats.lock:
            self.send_json(200, {"requests": stats.requests, "by_path": dict(stats.by_path)})

    def _file(self, path: str) -> Path | None:
        relative = unquote(path).lstrip("/")
        target = (self.server.root / relative).resolve()
        if not target.is_relative_to(self.server.root) or not target.is_file():
            return None
        return target

    def do_route_file(self) -> None:
        server, path = self.server, self.path_only
        redirected = path.startswith(REDIRECTED + "/")
        if redirected:
            path = path[len(REDIRECTED):]
        target = self._file(path)
        name = path.rsplit("/", 1)[-1]
        if target is None or server.fault("missing", name):
            self.send_json(404, {"error": "not found"})
            return
        if server.fault("slow", name):
            time.sleep(server.options.slow_seconds)
        if server.fault("flaky", name):
            with server.served_lock:
                failures = server.served.get(path, 0)
                server.served[path] = failures + 1
            if failures < server.options.flaky_failures:
                self.send_json(server.knobs.fail_status, {"error": "injected failure"})
                return
        if not redirected and server.fault("redirect", name):
            self.send(302, b"", "text/plain", {"Location": REDIRECTED + path})
            return
        data = target.read_bytes()
        if server.fault("oversize", name) and len(data) < server.options.oversize_bytes:
            pad = server.options.oversize_bytes - len(data)
            data += (b"\n/*" + b"x" * max(0, pad - 6) + b"*/\n")[:pad]
        content_type = "text/javascript" if name.endswith(".js") else "application/octet-stream"
        if server.options.chunked:
            self._send_chunked(data, content_type)
        else:
            self.send(200, data, content_type)

    def _send_chunked(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        for start in range(0, len(data), 64 * 1024):
            chunk = data[start:start + 64 * 1024]
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


def _names(text: str) -> set[str]:
    return {n.strip() for n in text.split(",") if n.strip()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, type=Path, help="folder to serve")
    for kind in FAULTS:
        parser.add_argument(f"--{kind}", default="", metavar="NAMES",
                            help=f"comma-separated stems or file names that are {kind}")
        parser.add_argument(f"--{kind}-rate", type=float, default=0.0, metavar="SHARE",
                            help=f"share of the .js files that are {kind} (drawn from --seed and the name)")
    parser.add_argument("--oversize-bytes", type=int, default=MIB + 1024, help="size of an oversize answer")
    parser.add_argument("--slow-seconds", type=float, default=30.0, help="how long a slow file is held")
    parser.add_argument("--flaky-failures", type=int, default=1, help="failed answers before a flaky file is served")
    parser.add_argument("--chunked", action="store_true", help="send files without Content-Length")


def options_from_args(args: argparse.Namespace) -> CdnOptions:
    values = {}
    for kind in FAULTS:
        values[kind] = _names(getattr(args, kind))
        values[f"{kind}_rate"] = getattr(args, f"{kind}_rate")
    return CdnOptions(**values, oversize_bytes=args.oversize_bytes, slow_seconds=args.slow_seconds,
                      flaky_failures=args.flaky_failures, chunked=args.chunked)


def create_server(host: str, port: int, args: argparse.Namespace) -> SimServer:
    root = Path(args.root)
    if not root.is_dir():
        raise SystemExit(f"--root {root}: not a folder")
    return CdnServer((host, port), root, options_from_args(args), Knobs.from_args(args))


def start_cdn(root: Path, *, knobs: Knobs | None = None, host: str = "127.0.0.1", **options) -> CdnServer:
    """A CDN stand-in serving `root` on a free loopback port, in a background thread."""
    for kind in FAULTS:
        if isinstance(options.get(kind), (list, tuple, str)):
            value = options[kind]
            options[kind] = _names(value) if isinstance(value, str) else set(value)
    server = CdnServer((host, 0), Path(root), CdnOptions(**options), knobs)
    server.start()
    return server


def stats_of(url: str) -> dict:
    """`/_sim/stats` of a CDN stand-in running elsewhere."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())
