"""`python -m runner404.sim <service>`: run one stand-in service in the foreground."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from runner404.sim.http import Knobs, serve_main

# service name -> module; each module has add_arguments(parser) and create_server(host, port, args)
SERVICES = {
    "cdn": "runner404.sim.cdn",
    "generator": "runner404.sim.generator",
    "health": "runner404.sim.health",
    "renderer": "runner404.sim.renderer",
    "targon": "runner404.sim.targon",
    "vlm": "runner404.sim.vlm",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner404.sim",
                                     description="Stand-in services speaking the real wire protocols on loopback.")
    commands = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for name, module_name in SERVICES.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        sub.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only by default)")
        sub.add_argument("--port", type=int, default=None, help="port (default: $PORT, else a free one)")
        Knobs.add_arguments(sub)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve_main(importlib.import_module(SERVICES[args.service]).create_server, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
