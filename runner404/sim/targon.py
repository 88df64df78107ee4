"""The Targon workload REST API (/tha/v2/workloads), backed by local stand-in services.

Wire format: reference protocols.md §4. Endpoints (all JSON, all need `Authorization: Bearer
<key>`, 401 otherwise; with an api key configured only that key is accepted):

- `POST /tha/v2/workloads` (create, body §4.3, validated: 400 `{"error": ...}`) → `{"uid"}`;
- `POST /tha/v2/workloads/{uid}/deploy` → `{uid, name, state:{status, message, urls}, cost_per_hour}`;
- `GET /tha/v2/workloads?type=SERVERLESS` → `{"items": [...], "next_cursor": null}`;
- `GET /tha/v2/workloads/{uid}/state` → `{uid, workload_type, status, message, urls, ...}`;
- `DELETE /tha/v2/workloads/{uid}` → `{}`; an unknown uid → 404 `{"error": ...}`.

Lifecycle: create → `pending`; deploy → `deploying`, then after `url_delay` seconds `running`
with one URL `http://127.0.0.1:<port>` of a real service started for the workload (chosen by
image, see `runner404.sim.services`); with `fail_deploy` it becomes `failed` instead; with
`lose_after` a running workload becomes `failed` that many seconds later and its service stops.
DELETE → `terminating`, and after `delete_delay` seconds the service stops and the workload is
gone (404 for its state, absent from the list; `server.workloads` keeps it as `deleted`).
Deploying an already deploying or running workload answers its current state (idempotent);
deploying a failed one deploys it again; deploying a terminating one is a 409.
`visibility: cluster-local` workloads run but get no URL.

State changes are applied both by `threading.Timer`s at their due time (so services start and
stop without anyone asking) and at request time from `time.monotonic()` (so a request made
after a due time always sees the change, however late a timer thread runs).

Python API for tests: `start_targon(**knobs) -> TargonSim` (running), `sim.url`,
`sim.workloads`, `sim.live_workloads()`, `sim.stop()` (also stops every backing service).
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner404.sim import services
from runner404.sim.http import Knobs, SimHandler, SimServer

PREFIX = "/tha/v2/workloads"

# Reference §4.6 (SDK core/resources.py), with an hourly price the stand-in reports.
RESOURCE_COST: dict[str, float] = {
    "cpu-small": 0.05, "cpu-medium": 0.10, "cpu-large": 0.20, "cpu-xlarge": 0.40,
    "h200-small": 3.50, "h200-medium": 7.00, "h200-large": 14.00, "h200-xlarge": 28.00,
    "h100-small": 2.50, "h100-medium": 5.00, "h100-large": 10.00, "h100-xlarge": 20.00,
    "b200-small": 5.00, "b200-medium": 10.00, "b200-large": 20.00, "b200-xlarge": 40.00,
    "rtx6000b-small": 1.50,
    "rtx4090-small": 0.50, "rtx4090-medium": 1.00, "rtx4090-large": 2.00,
}
RESOURCE_NAMES = frozenset(RESOURCE_COST)

_CREATE_FIELDS = {"type", "name", "image", "resource_name", "envs", "commands", "args",
                  "registry_auth", "app_id", "ports", "serverless_config"}
_SCALING_FIELDS = {"min_replicas", "max_replicas", "container_concurrency", "target_concurrency",
                   "visibility"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Workload:
    """One workload as the stand-in holds it (inspect through `TargonSim.workloads`)."""

    uid: str
    name: str
    image: str
    resource_name: str
    request: dict[str, Any]
    status: str = "pending"
    message: str = "workload created"
    server: SimServer | None = None  # the backing service while running
    created_at: str = field(default_factory=_now_iso)
    updated_at: str = field(default_factory=_now_iso)
    running_due: float | None = None  # monotonic times of the pending transitions
    lost_due: float | None = None
    gone_due: float | None = None
    service_url: str | None = None  # the last backing service's URL (kept after it stops)

    @property
    def deleted(self) -> bool:
        return self.status == "deleted"

    @property
    def port(self) -> int:
        return int(self.request["ports"][0]["port"])

    @property
    def replicas(self) -> int:
        return int(self.request["serverless_config"]["min_replicas"])

    @property
    def cost_per_hour(self) -> float:
        return RESOURCE_COST[self.resource_name]

    @property
    def url(self) -> str | None:
        """The public URL while running (None for cluster-local workloads)."""
        if self.status != "running" or self.server is None:
            return None
        if self.request["serverless_config"]["visibility"] != "external":
            return None
        return self.server.url

    def urls(self) -> list[dict[str, Any]]:
        return [{"port": self.port, "url": self.url}] if self.url else []

    def set(self, status: str, message: str) -> None:
        self.status, self.message, self.updated_at = status, message, _now_iso()


class BadRequest(Exception):
    pass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BadRequest(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_create(body: Any) -> None:
    """Raise BadRequest for a create body that is not the reference §4.3 shape."""
    _check(isinstance(body, dict), "request body must be a JSON object")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    _check(not unknown, f"unknown field(s): {', '.join(unknown)}")
    for key in ("type", "name", "image", "resource_name", "ports", "serverless_config"):
        _check(key in body, f"missing field: {key}")
    _check(body["type"] == "SERVERLESS", "type must be SERVERLESS")
    _check(_nonempty_str(body["name"]), "name must be a non-empty string")
    _check(_nonempty_str(body["image"]), "image must be a non-empty string")
    _check(body["resource_name"] in RESOURCE_NAMES,
           f"unknown resource_name: {str(body['resource_name'])[:64]!r}")
    envs = body.get("envs", [])
    _check(isinstance(envs, list), "envs must be a list")
    for env in envs:
        _check(isinstance(env, dict) and set(env) == {"name", "value"}
               and _nonempty_str(env["name"]) and isinstance(env["value"], str),
               "envs items must be {name: non-empty string, value: string}")
    for key in ("commands", "args"):
        value = body.get(key, [])
        _check(isinstance(value, list) and all(isinstance(v, str) for v in value),
               f"{key} must be a list of strings")
    if "registry_auth" in body:
        auth = body["registry_auth"]
        _check(isinstance(auth, dict) and set(auth) <= {"server", "username", "password"}
               and all(isinstance(v, str) for v in auth.values()),
               "registry_auth must be {server, username, password} strings")
    if "app_id" in body:
        _check(_nonempty_str(body["app_id"]), "app_id must be a non-empty string")
    ports = body["ports"]
    _check(isinstance(ports, list) and len(ports) >= 1, "ports must be a non-empty list")
    for port in ports:
        _check(isinstance(port, dict) and set(port) <= {"port", "protocol"} and "port" in port,
               "ports items must be {port, protocol}")
        _check(_is_int(port["port"]) and 1 <= port["port"] <= 65535, "port must be an integer 1-65535")
        _check(port.get("protocol", "TCP") in ("TCP", "UDP"), "protocol must be TCP or UDP")
    config = body["serverless_config"]
    _check(isinstance(config, dict), "serverless_config must be an object")
    unknown = sorted(set(config) - _SCALING_FIELDS)
    _check(not unknown, f"unknown serverless_config field(s): {', '.join(unknown)}")
    for key in sorted(_SCALING_FIELDS):
        _check(key in config, f"missing field: serverless_config.{key}")
    _check(_is_int(config["min_replicas"]) and config["min_replicas"] >= 1,
           "serverless_config.min_replicas must be an integer >= 1")
    _check(_is_int(config["max_replicas"]) and config["max_replicas"] >= config["min_replicas"],
           "serverless_config.max_replicas must be an integer >= min_replicas")
    for key in ("container_concurrency", "target_concurrency"):
        _check(_is_int(config[key]) and config[key] >= 1, f"serverless_config.{key} must be an integer >= 1")
    _check(config["visibility"] in ("external", "cluster-local"),
           "serverless_config.visibility must be external or cluster-local")


class TargonHandler(SimHandler):
    server: TargonSim
    def route(self, method: str, path: str) -> str | None:
        if not self._authorized():
            return "unauthorized"
        path = path.rstrip("/") if path != "/" else path
        if path == PREFIX:
            return {"GET": "list", "POST": "create"}.get(method, "not_allowed")
        if not path.startswith(PREFIX + "/"):
            return None
        parts = path[len(PREFIX) + 1:].split("/")
        self.uid = parts[0]
        if len(parts) == 1:
            return "delete" if method == "DELETE" else "not_allowed"
        if len(parts) == 2 and parts[1] == "deploy":
            return "deploy" if method == "POST" else "not_allowed"
        if len(parts) == 2 and parts[1] == "state":
            return "state" if method == "GET" else "not_allowed"
        return None

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        expected = self.server.api_key
        return expected is None or hmac.compare_digest(token.strip().encode(), expected.encode())

    def error(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    # -- routes ----------------------------------------------------------------------------

    def do_route_unauthorized(self) -> None:
        self.error(401, "unauthorized: a valid 'Authorization: Bearer <api key>' header is required")

    def do_route_not_allowed(self) -> None:
        self.error(405, f"method {self.command} not allowed")

    def do_route_create(self) -> None:
        try:
            body = json.loads(self.body() or b"null")
        except ValueError:
            self.error(400, "request body is not valid JSON")
            return
        try:
            validate_create(body)
        except BadRequest as exc:
            self.error(400, str(exc))
            return
        self.send_json(200, {"uid": self.server.create(body).uid})

    def do_route_deploy(self) -> None:
        try:
            workload = self.server.deploy(self.uid)
        except KeyError:
            self.error(404, f"workload {self.uid[:64]} not found")
        except BadRequest as exc:
            self.error(409, str(exc))
        else:
            self.send_json(200, workload)

    def do_route_list(self) -> None:
        kind = self.query.get("type")
        items = self.server.list_items() if kind is None or kind.upper() == "SERVERLESS" else []
        self.send_json(200, {"items": items, "next_cursor": None})

    def do_route_state(self) -> None:
        state = self.server.state(self.uid)
        if state is None:
            self.error(404, f"workload {self.uid[:64]} not found")
        else:
            self.send_json(200, state)

    def do_route_delete(self) -> None:
        if self.server.delete(self.uid):
            self.send_json(200, {})
        else:
            self.error(404, f"workload {self.uid[:64]} not found")


class TargonSim(SimServer):
    """The Targon API stand-in; `workloads` maps uid → Workload (deleted ones included).

    `stop()` also closes connections clients hold open, so a stopped stand-in is really gone.
    """

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0), *, knobs: Knobs | None = None,
                 api_key: str | None = None, url_delay: float = 0.2, health_delay: float = 0.0,
                 delete_delay: float = 0.1, fail_deploy: bool = False, lose_after: float | None = None,
                 service_knobs: Knobs | None = None, service_options: Mapping[str, Any] | None = None):
        for name, value in (("url_delay", url_delay), ("health_delay", health_delay),
                            ("delete_delay", delete_delay), ("lose_after", lose_after)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        super().__init__(address, TargonHandler, knobs)
        self.api_key = api_key or None
        self.url_delay = url_delay
        self.health_delay = health_delay
        self.delete_delay = delete_delay
        self.fail_deploy = fail_deploy
        self.lose_after = lose_after
        self.service_knobs = services.ServiceKnobs(health_delay, service_knobs or Knobs(),
                                                   dict(service_options or {}))
        self.workloads: dict[str, Workload] = {}
        self.lock = threading.RLock()
        self._timers: set[threading.Timer] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:  # never shows the api key
        return f"TargonSim(url={self.url!r}, workloads={len(self.workloads)})"

    # -- lifecycle of the stand-in itself ------------------------------------------------------

    def start(self) -> threading.Thread:
        self._thread = super().start()
        return self._thread

    def stop(self) -> None:
        """Stop serving, cancel every timer and stop every backing service."""
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()

    def server_close(self) -> None:
        super().server_close()
        with self.lock:
            self._closed = True
            timers, self._timers = self._timers, set()
            backing = [w.server for w in self.workloads.values() if w.server is not None]
            for workload in self.workloads.values():
                workload.server = None
        for timer in timers:
            timer.cancel()
        for server in backing:
            _stop_service(server)

    def live_workloads(self, include_terminating: bool = True) -> list[Workload]:
        """Workloads not yet gone (optionally without those already being deleted)."""
        with self.lock:
            self._advance_all()
            return [w for w in self.workloads.values()
                    if not w.deleted and (include_terminating or w.status != "terminating")]

    # -- operations (called by the handler; each takes the lock) -------------------------------

    def create(self, body: dict[str, Any]) -> Workload:
        workload = Workload(uid=f"wrk-{secrets.token_hex(8)}", name=body["name"], image=body["image"],
                            resource_name=body["resource_name"], request=body)
        with self.lock:
            self.workloads[workload.uid] = workload
        return workload

    def deploy(self, uid: str) -> dict[str, Any]:
        with self.lock:
            workload = self._get(uid)
            if workload is not None:
                self._advance(workload, time.monotonic())
            if workload is None or workload.deleted:
                raise KeyError(uid)
            if workload.status == "terminating":
                raise BadRequest(f"workload {uid} is terminating")
            if workload.status in ("pending", "failed"):
                workload.set("deploying", "deploying")
                workload.running_due = time.monotonic() + self.url_delay
                workload.lost_due = None
                self._schedule(workload.uid, workload.running_due)
                self._advance(workload, time.monotonic())
            return {"uid": workload.uid, "name": workload.name,
                    "state": {"status": workload.status, "message": workload.message,
                              "urls": workload.urls()},
                    "cost_per_hour": workload.cost_per_hour}

    def list_items(self) -> list[dict[str, Any]]:
        with self.lock:
            self._advance_all()
            return [{"uid": w.uid, "name": w.name, "urls": w.urls(),
                     "state": {"status": w.status, "urls": w.urls()},
                     "cost_per_hour": w.cost_per_hour, "created_at": w.created_at}
                    for w in self.workloads.values() if not w.deleted]

    def state(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            workload = self._get(uid)
            if workload is not None:
                self._advance(workload, time.monotonic())
            if workload is None or workload.deleted:
                return None
            ready = workload.replicas if workload.status == "running" else 0
            total = workload.replicas if workload.status in ("deploying", "running") else 0
            return {"uid": workload.uid, "workload_type": "SERVERLESS", "status": workload.status,
                    "message": workload.message, "urls": workload.urls(),
                    "ready_replicas": ready, "total_replicas": total, "updated_at": workload.updated_at}

    def delete(self, uid: str) -> bool:
        with self.lock:
            workload = self._get(uid)
            if workload is not None:
                self._advance(workload, time.monotonic())
            if workload is None or workload.deleted:
                return False
            if workload.status != "terminating":
                workload.set("terminating", "terminating")
                workload.running_due = workload.lost_due = None
                workload.gone_due = time.monotonic() + self.delete_delay
                self._schedule(workload.uid, workload.gone_due)
                self._advance(workload, time.monotonic())
            return True

    # -- state machine -----------------------------------------------------------------------

    def _get(self, uid: str) -> Workload | None:
        return self.workloads.get(uid)

    def _advance_all(self) -> None:
        now = time.monotonic()
        for workload in list(self.workloads.values()):
            self._advance(workload, now)

    def _advance(self, w: Workload, now: float) -> None:
        """Apply every transition of `w` due by `now` (caller holds the lock).

        A backing service is stopped inside its transition, so no answer ever reports a
        workload failed or gone while its service still accepts connections (a stop takes at
        most one poll interval of the service, 50 ms).
        """
        while True:
            if w.status == "deploying" and w.running_due is not None and now >= w.running_due:
                due, w.running_due = w.running_due, None
                if self.fail_deploy:
                    w.set("failed", "deploy failed: container exited with code 1 (injected by fail_deploy)")
                    continue
                try:
                    w.server = self._start_service(w)
                except Exception as exc:  # a stand-in that cannot start is a failed container
                    w.set("failed", f"container failed to start: {type(exc).__name__}: {exc}")
                    continue
                w.service_url = w.server.url
                w.set("running", "running")
                if self.lose_after is not None:
                    w.lost_due = due + self.lose_after
                    self._schedule(w.uid, w.lost_due)
            elif w.status == "running" and w.lost_due is not None and now >= w.lost_due:
                w.lost_due = None
                self._stop_backing(w)
                w.set("failed", "workload lost: replica terminated unexpectedly (injected by lose_after)")
            elif w.status == "terminating" and w.gone_due is not None and now >= w.gone_due:
                w.gone_due = None
                self._stop_backing(w)
                w.set("deleted", "deleted")
            else:
                return

    @staticmethod
    def _stop_backing(w: Workload) -> None:
        server, w.server = w.server, None
        if server is not None:
            _stop_service(server)

    def _start_service(self, w: Workload) -> SimServer:
        if self._closed:
            raise RuntimeError("the Targon stand-in is stopped")
        envs = {e["name"]: e["value"] for e in w.request.get("envs", [])}
        factory = services.service_for_image(w.image)
        server = factory(list(w.request.get("args", [])), envs, self.service_knobs)
        server.start()
        return server

    def _schedule(self, uid: str, due: float) -> None:
        if self._closed:
            return
        timer = threading.Timer(max(0.0, due - time.monotonic()), self._tick, args=(uid, due))
        timer.daemon = True
        timer.args = (uid, due, timer)
        self._timers.add(timer)
        timer.start()

    def _tick(self, uid: str, due: float, timer: threading.Timer) -> None:
        with self.lock:
            self._timers.discard(timer)
            workload = self._get(uid)
            if not self._closed and workload is not None:
                self._advance(workload, max(time.monotonic(), due))


def _stop_service(server: SimServer) -> None:
    try:
        server.stop()
    except Exception:  # a broken stand-in must not break the API stand-in
        pass


def start_targon(host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0, capacity: int = 0,
                 fail_rate: float = 0.0, fail_status: int = 503, drop_rate: float = 0.0, seed: int = 0,
                 **options: Any) -> TargonSim:
    """A running TargonSim; `options` are TargonSim's keyword arguments (url_delay, api_key, ...)."""
    knobs = Knobs(latency, capacity, fail_rate, fail_status, drop_rate, seed)
    server = TargonSim((host, port), knobs=knobs, **options)
    server.start()
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-key", default=None,
                        help="accept only this bearer key (default: any non-empty key)")
    parser.add_argument("--url-delay", type=float, default=0.2,
                        help="seconds from deploy until the workload is running with a URL")
    parser.add_argument("--health-delay", type=float, default=0.0,
                        help="seconds a backing service answers /health with 503 after it starts")
    parser.add_argument("--delete-delay", type=float, default=0.1,
                        help="seconds from DELETE until the workload is gone")
    parser.add_argument("--fail-deploy", action="store_true",
                        help="deployed workloads end in status 'failed' instead of running")
    parser.add_argument("--lose-after", type=float, default=None,
                        help="seconds after running at which a workload fails and its service stops")
    parser.add_argument("--service-knob", action="append", default=[], type=_knob, metavar="KEY=VALUE",
                        help=f"a fault knob of every backing service ({', '.join(_KNOB_TYPES)}); repeatable")
    parser.add_argument("--service-option", action="append", default=[], type=_assignment, metavar="KEY=VALUE",
                        help="a stand-in specific option of the backing services, e.g. "
                             "generator_quality=poor (values parsed as JSON when they parse); repeatable")


_KNOB_TYPES = {f.name: type(getattr(Knobs(), f.name)) for f in dataclasses.fields(Knobs)}


def _assignment(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def _knob(text: str) -> tuple[str, Any]:
    key, value = _assignment(text)
    if key not in _KNOB_TYPES:
        raise argparse.ArgumentTypeError(f"unknown knob {key!r} (known: {', '.join(_KNOB_TYPES)})")
    try:
        return key, _KNOB_TYPES[key](value)
    except (TypeError, ValueError):
        kind = "an integer" if _KNOB_TYPES[key] is int else "a number"
        raise argparse.ArgumentTypeError(f"{key} must be {kind}, got {value!r}") from None


def create_server(host: str, port: int, args: argparse.Namespace) -> SimServer:
    return TargonSim((host, port), knobs=Knobs.from_args(args), api_key=args.api_key,
                     url_delay=args.url_delay, health_delay=args.health_delay,
                     delete_delay=args.delete_delay, fail_deploy=args.fail_deploy,
                     lose_after=args.lose_after, service_knobs=Knobs(**dict(args.service_knob)),
                     service_options=dict(args.service_option))
