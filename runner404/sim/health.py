"""A service with only `GET /health` (200 `{"status":"ok"}`), optionally unhealthy for a while."""

from __future__ import annotations

import argparse
import time

from runner404.sim.http import Knobs, SimHandler, SimServer


class HealthHandler(SimHandler):
    routes = {("GET", "/health"): "health"}

    def do_route_health(self) -> None:
        server = self.server
        if time.monotonic() < server.healthy_at:  # type: ignore[attr-defined]
            self.send_json(server.warming_status, {"status": "warming_up"})  # type: ignore[attr-defined]
        else:
            self.send_json(200, {"status": "ok"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds before /health answers 200")
    parser.add_argument("--warming-status", type=int, default=503, help="status while warming up (e.g. 204)")


def create_server(host: str, port: int, args: argparse.Namespace) -> SimServer:
    server = SimServer((host, port), HealthHandler, Knobs.from_args(args))
    server.healthy_at = time.monotonic() + args.warmup  # type: ignore[attr-defined]
    server.warming_status = args.warming_status  # type: ignore[attr-defined]
    return server
