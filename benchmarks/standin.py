"""A stand-in service for the benchmarks: `python -m runner404.sim SERVICE`, plus a record of use.

    python benchmarks/standin.py SERVICE --stats-file FILE [the flags of python -m runner404.sim SERVICE]
    python benchmarks/standin.py targon --stats-file FILE --service-option generator_prompt_latency=0.02 ...

It runs the very same server class as `python -m runner404.sim` in its own process (so it never
shares the runner's interpreter), and records how its capacity was used:
- every capacity slot held (renderer render stage, VLM completion): wall-clock start and end;
- every generator batch: start, end and prompt count;
- its own CPU seconds and peak RSS.
On SIGTERM or SIGINT (a local pod's teardown) it writes them as JSON to `--stats-file` and exits.

`--fixed-service` makes a request's configured latency include the stand-in's own CPU work, so
the capacity bound is what the stand-in really delivers on a small machine: the generator holds
a GPU for max(latency, work) per prompt (it generates, then sleeps what is left of the latency),
the renderer holds a render slot for max(latency, work) per request (drawing and encoding the
PNGs happen inside the slot, which is released no earlier than `latency` after it was taken;
a grid, sent from inside the slot, may so reach the client before the slot is free), and the
VLM answers from a hash of each image instead of analysing it (penalties from the hash, side
guard `ok`, the smallest valid object otherwise), so a call costs its latency and not the
~70 ms of CPU the image analysis of two 1041 px grids takes.

The backing services the Targon stand-in starts per workload take `--service-option KEY=VALUE`
and `--service-knob KEY=VALUE` (flags of `python -m runner404.sim targon`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner404.sim.__main__ import SERVICES  # noqa: E402
from runner404.sim.http import Knobs  # noqa: E402


class RecordingSlots:
    """A drop-in for SimServer.slots (a BoundedSemaphore) that records every hold."""

    def __init__(self, capacity: int, record: list, min_hold: float = 0.0):
        self._sem = threading.BoundedSemaphore(capacity)
        self._record = record
        self._local = threading.local()
        self.min_hold = min_hold  # a hold lasts at least this long (--fixed-service)

    def acquire(self, *args, **kwargs):
        got = self._sem.acquire(*args, **kwargs)
        if got:
            self._local.started = time.time()
        return got

    def release(self) -> None:
        started = getattr(self._local, "started", None)
        if started is not None and self.min_hold > 0:
            left = started + self.min_hold - time.time()
            if left > 0:
                time.sleep(left)
        if started is not None:
            self._record.append((started, time.time()))
            self._local.started = None
        self._sem.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def _remainder(latency: float, started: float) -> None:
    left = latency - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)


def fix_service_time(name: str, server) -> None:
    """See `--fixed-service` in the module docstring."""
    if name in ("generator", "targon"):  # every generator server, also those a Targon stand-in starts
        from runner404.sim.generator import GeneratorServer

        if getattr(GeneratorServer, "_fixed_service", False):
            return
        GeneratorServer._fixed_service = True
        init, original = GeneratorServer.__init__, GeneratorServer._generate_one

        def __init__(self, *a, **kw):
            init(self, *a, **kw)
            self.fixed_latency, self.prompt_latency = self.prompt_latency, 0.0

        def generate_one(self, stem, url, seed):
            started = time.monotonic()
            try:
                return original(self, stem, url, seed)
            finally:
                _remainder(self.fixed_latency, started)

        GeneratorServer.__init__, GeneratorServer._generate_one = __init__, generate_one
        if isinstance(server, GeneratorServer):
            server.fixed_latency, server.prompt_latency = server.prompt_latency, 0.0
    elif name == "renderer":  # a render holds its slot max(latency, drawing + encoding)
        import dataclasses

        server.slots.min_hold = server.knobs.latency
        server.knobs = dataclasses.replace(server.knobs, latency=0.0)
    elif name == "vlm":
        import hashlib

        from runner404.sim import vlm

        def penalty(url: str) -> int:
            return hashlib.sha256(url.encode()).digest()[0] % 11

        def compute(self, request):
            label = request.label
            urls = request.image_urls
            if label in vlm.PENALTY_LABELS and len(urls) >= 3:
                reply = {"penalty_1": penalty(urls[1]), "penalty_2": penalty(urls[2]), "issues": "hashed"}
            elif label == "s4_per_angle":
                reply = {"verdict": "ok", "reason": "hashed"}
            elif label == "explain":
                reply = {"issues": "hashed"}
            else:
                reply = vlm.schema_instance(request.schema)
            return json.dumps(reply)

        type(server).compute = compute


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SERVICES:
        print(f"usage: standin.py {{{','.join(SERVICES)}}} --stats-file FILE [flags]", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SERVICES[name])
    parser = argparse.ArgumentParser(prog=f"standin.py {name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--stats-file", required=True)
    Knobs.add_arguments(parser)
    module.add_arguments(parser)
    parser.add_argument("--fixed-service", action="store_true",
                        help="latency includes the stand-in's CPU work (see the module docstring)")
    args = parser.parse_args(rest)
    port = args.port if args.port is not None else int(os.environ.get("PORT", "0"))

    holds: list[tuple[float, float]] = []
    batches: list[dict] = []
    server = module.create_server(args.host, port, args)
    if getattr(server, "slots", None) is not None:
        server.slots = RecordingSlots(server.knobs.capacity, holds)
    if name in ("generator", "targon"):
        from runner404.sim.generator import GeneratorServer

        original = GeneratorServer._run

        def recorded_run(self, batch):  # the whole batch: queueing on the GPUs and generating
            started = time.time()
            try:
                return original(self, batch)
            finally:
                batches.append({"start": started, "end": time.time(), "prompts": batch.total,
                                "server": id(self)})

        GeneratorServer._run = recorded_run

    if args.fixed_service:
        fix_service_time(name, server)
    written = threading.Event()

    def write_stats(*_args) -> None:
        if written.is_set():
            return
        written.set()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy = sum(end - start for start, end in holds)
        first = min((s for s, _ in holds), default=None)
        last = max((e for _, e in holds), default=None)
        capacity = server.knobs.capacity
        share = busy / ((last - first) * capacity) if holds and capacity and last > first else None
        stats = {
            "service": name, "capacity": capacity, "holds": len(holds), "busy_seconds": busy,
            "first_hold": first, "last_hold": last, "busy_share": share,
            "mean_hold": busy / len(holds) if holds else None,
            "hold_spans": holds, "batches": batches,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss,
            "calls_by_label": dict(getattr(server, "calls_by_label", {}) or {}),
        }
        Path(args.stats_file).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.stats_file + ".tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, args.stats_file)

    def stop(*_args) -> None:
        write_stats()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        write_stats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
