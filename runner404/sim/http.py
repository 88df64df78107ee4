"""A small threaded HTTP/1.1 server base shared by the stand-ins, with fault knobs.

Knobs every stand-in has (command-line flags of the same names):
- latency: seconds added to every request (after it acquires a capacity slot);
- capacity: requests served at once (others wait), 0 = unlimited;
- fail_rate / fail_status: answer that share of requests with that status instead;
- drop_rate: close that share of connections without answering;
- stall_rate / stall: hold that share of requests `stall` seconds before answering (timeouts).
The random source is seeded so a run with the same seed injects the same faults.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 256 * 1024 * 1024


def is_loopback(host: str | None) -> bool:
    """Stand-ins fetch images only from this machine (tests and rehearsals never leave it)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Knobs:
    latency: float = 0.0
    capacity: int = 0
    fail_rate: float = 0.0
    fail_status: int = 503
    drop_rate: float = 0.0
    seed: int = 0
    stall_rate: float = 0.0
    stall: float = 0.0

    def delay(self, server: SimServer) -> None:
        """Sleep the latency, and the stall when this request is drawn to stall."""
        wait = self.latency + (self.stall if server.chance(self.stall_rate) else 0.0)
        if wait > 0:
            time.sleep(wait)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
        parser.add_argument("--capacity", type=int, default=0, help="requests served at once (0 = unlimited)")
        parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered with --fail-status")
        parser.add_argument("--fail-status", type=int, default=503, help="status of injected failures")
        parser.add_argument("--drop-rate", type=float, default=0.0, help="share of connections closed without an answer")
        parser.add_argument("--seed", type=int, default=0, help="seed of the fault injection")
        parser.add_argument("--stall-rate", type=float, default=0.0, help="share of requests held --stall seconds")
        parser.add_argument("--stall", type=float, default=0.0, help="seconds a stalled request is held")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Knobs:
        return cls(args.latency, args.capacity, args.fail_rate, args.fail_status, args.drop_rate, args.seed,
                   args.stall_rate, args.stall)


@dataclass
class Stats:
    """Counters the tests and benchmarks read: requests, busy time, peak concurrency."""

    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    busy_seconds: float = 0.0  # summed over concurrent requests
    by_path: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self, path: str) -> None:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.by_path[path] = self.by_path.get(path, 0) + 1

    def leave(self, seconds: float) -> None:
        with self.lock:
            self.in_flight -= 1
            self.busy_seconds += seconds


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default 5 resets connections when a client opens dozens at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 knobs: Knobs | None = None):
        super().__init__(address, handler)
        self.knobs = knobs or Knobs()
        self.stats = Stats()
        self.random = random.Random(self.knobs.seed)
        self.random_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(self.knobs.capacity) if self.knobs.capacity > 0 else None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # A stopped service must not go on answering on keep-alive connections a client still
    # holds open (a deleted workload would keep looking healthy to a pooled HTTP client).
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self.random_lock:
            return self.random.random() < rate

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class SimHandler(BaseHTTPRequestHandler):
    """Routes `(METHOD, path)` to `do_route_<name>` methods declared in `routes`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stalls
    server: SimServer
    _raw_body: bytes | None = None
    routes: dict[tuple[str, str], str] = {}
    server_version = "runner404-sim"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet unless asked
        if os.environ.get("RUNNER404_SIM_LOG"):
            super().log_message(format, *args)

    # -- helpers for routes ----------------------------------------------------------------

    @property
    def path_only(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def parse_request(self) -> bool:  # once per request, also on a kept-alive connection
        self._raw_body = None
        return super().parse_request()

    def body(self) -> bytes:
        return self._raw_body or b""

    def _read_body(self) -> bool:
        """Read the whole request body up front, so an early answer (an injected failure, a 404)
        never leaves body bytes on a keep-alive connection to be misread as the next request."""
        if self._raw_body is not None:
            return True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self.send_json(413 if length > MAX_BODY else 400, {"error": "bad Content-Length"})
            return False
        self._raw_body = self.rfile.read(length) if length else b""
        return True

    def json_body(self) -> Any:
        return json.loads(self.body() or b"null")

    def send(self, status: int, body: bytes = b"", content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if status in (204, 304):  # no body, no length: a body would be misread as the next response
            self.end_headers()
            return
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any) -> None:
        self.send(status, json.dumps(payload).encode(), "application/json")

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if not self._read_body():
            return
        path = self.path_only
        name = self.route(self.command, path)
        stats = self.server.stats
        stats.enter(path)
        started = time.monotonic()
        try:
            if self.server.slots:
                self.server.slots.acquire()
            try:
                self.server.knobs.delay(self.server)
                if self.server.chance(self.server.knobs.drop_rate):
                    self.close_connection = True
                    self.connection.close()
                    return
                if self.server.chance(self.server.knobs.fail_rate):
                    self.send_json(self.server.knobs.fail_status, {"error": "injected failure"})
                    return
                if name is None:
                    self.send_json(404, {"error": "not found"})
                    return
                getattr(self, f"do_route_{name}")()
            finally:
                if self.server.slots:
                    self.server.slots.release()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            stats.leave(time.monotonic() - started)

    def route(self, method: str, path: str) -> str | None:
        """The route name for a request; override for path parameters."""
        return self.routes.get((method, path))

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch


def serve_main(create: Callable[[str, int, argparse.Namespace], SimServer], args: argparse.Namespace) -> None:
    """Run a stand-in in the foreground until SIGTERM/SIGINT; announce its URL on stdout."""
    port = args.port if args.port is not None else int(os.environ.get("PORT", "0"))
    server = create(args.host, port, args)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
