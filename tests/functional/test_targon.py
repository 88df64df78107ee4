"""The Targon REST client against the Targon stand-in, over real HTTP on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from runner404.engine.retry import RetryPolicy
from runner404.pods.targon_api import TargonClient, TargonError, WorkloadState, build_create_request
from runner404.sim import services
from runner404.sim.health import HealthHandler
from runner404.sim.http import SimServer
from runner404.sim.targon import TargonSim, start_targon
from conftest import stop_process

KEY = "sim-key-0123456789"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.005)
WAIT = 5.0  # upper bound of every wait loop (the waits themselves take ~0.1-0.3 s)


@pytest.fixture
def targon():
    """Start Targon stand-ins (`targon(**knobs)`); all are stopped after the test."""
    started: list[TargonSim] = []

    def start(**knobs) -> TargonSim:
        knobs.setdefault("url_delay", 0.05)
        knobs.setdefault("delete_delay", 0.05)
        sim = start_targon(**knobs)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def client(sim: TargonSim, key: str = KEY, policy: RetryPolicy = FAST) -> TargonClient:
    return TargonClient(key, sim.url, timeout=5.0, retry_policy=policy)


def request(name: str = "generator", image: str = "docker.io/me/gen:v3", resource: str = "h200-small") -> dict:
    return build_create_request(name, image, resource, 10006, args=["--x"], env={"A": "1"})


async def wait_for(probe: Callable[[], Awaitable], done: Callable, timeout: float = WAIT, every: float = 0.01):
    """Call `probe` until `done(result)`; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {result!r}")
        await asyncio.sleep(every)


def health(url: str, http: httpx.Client | None = None) -> int | str:
    """Status of GET <url>/health, or the name of the connection error."""
    try:
        if http is not None:
            return http.get(f"{url}/health").status_code
        with httpx.Client(timeout=2.0, trust_env=False) as fresh:
            return fresh.get(f"{url}/health").status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_full_lifecycle(targon):
    sim = targon(api_key=KEY, url_delay=0.2, delete_delay=0.1)

    async def scenario():
        async with client(sim) as api:
            uid = await api.create(request())
            assert uid.startswith("wrk-")
            assert (await api.state(uid)).status == "pending"
            deployed_at = time.monotonic()
            answer = await api.deploy(uid)
            assert answer["uid"] == uid and answer["name"] == "generator"
            assert answer["state"]["status"] == "deploying" and answer["state"]["urls"] == []
            assert answer["cost_per_hour"] > 0
            [item] = await api.list()
            assert (item.uid, item.name, item.status, item.url) == (uid, "generator", "deploying", None)
            assert item.created_at

            state = await wait_for(lambda: api.state(uid), lambda s: s.url)
            assert time.monotonic() - deployed_at >= 0.2
            assert state == WorkloadState(uid, "running", "running", state.url, 1, 1) and state.running
            assert state.url.startswith("http://127.0.0.1:")
            assert health(state.url) == 200
            [item] = await api.list()
            assert (item.status, item.url) == ("running", state.url)
            record = sim.workloads[uid]
            assert (record.name, record.image, record.status) == ("generator", "docker.io/me/gen:v3", "running")
            assert record.server is not None and record.request["envs"] == [{"name": "A", "value": "1"}]

            assert await api.delete(uid) is True
            assert (await api.state(uid)).status == "terminating"
            assert await wait_for(lambda: api.state(uid), lambda s: s is None) is None
            assert await api.list() == []
            assert await api.delete(uid) is False
            with pytest.raises(TargonError) as info:
                await api.deploy(uid)
            assert info.value.status_code == 404
            return state.url

    url = asyncio.run(scenario())
    assert health(url) == "ConnectError"  # the backing service was stopped
    assert sim.live_workloads() == []
    assert all(w.status == "deleted" and w.server is None for w in sim.workloads.values())


def test_wrong_or_missing_key_is_401(targon):
    sim = targon(api_key=KEY)

    async def scenario():
        async with client(sim, key="wrong-key") as api:
            with pytest.raises(TargonError) as info:
                await api.list()
        assert info.value.status_code == 401
        async with client(sim) as api:
            assert await api.list() == []

    asyncio.run(scenario())
    answer = httpx.get(f"{sim.url}/tha/v2/workloads", trust_env=False)
    assert answer.status_code == 401 and answer.headers["Content-Type"] == "application/json"
    assert KEY not in answer.text


def test_any_key_is_accepted_without_a_configured_key(targon):
    sim = targon()

    async def scenario():
        async with client(sim, key="whatever") as api:
            return await api.create(request())

    assert asyncio.run(scenario()) in sim.workloads


@pytest.mark.parametrize("change, expected", [
    ({"resource_name": "h300-huge"}, "resource_name"),
    ({"type": "DEDICATED"}, "type"),
    ({"ports": []}, "ports"),
    ({"name": ""}, "name"),
    ({"envs": {"A": "1"}}, "envs"),
    ({"serverless_config": {"min_replicas": 1}}, "serverless_config"),
    ({"surprise": 1}, "unknown field"),
])
def test_invalid_create_is_400(targon, change, expected):
    sim = targon()

    async def scenario():
        async with client(sim) as api:
            with pytest.raises(TargonError) as info:
                await api.create(request() | change)
            return info.value

    error = asyncio.run(scenario())
    assert error.status_code == 400 and expected in error.body
    assert sim.stats.requests == 1 and sim.workloads == {}


def test_json_everywhere_and_unknown_uids(targon):
    sim = targon()
    auth = {"Authorization": "Bearer k"}
    with httpx.Client(base_url=sim.url, headers=auth, trust_env=False) as http:
        answers = [http.get("/tha/v2/workloads/wrk-nope/state"), http.delete("/tha/v2/workloads/wrk-nope"),
                   http.post("/tha/v2/workloads/wrk-nope/deploy"), http.get("/elsewhere"),
                   http.put("/tha/v2/workloads"), http.post("/tha/v2/workloads", content=b"{not json"),
                   http.get("/tha/v2/workloads", params={"type": "SERVERLESS"})]
    assert [a.status_code for a in answers] == [404, 404, 404, 404, 405, 400, 200]
    for answer in answers:
        assert answer.headers["Content-Type"] == "application/json"
        assert isinstance(answer.json(), dict)
    assert answers[-1].json() == {"items": [], "next_cursor": None}
    assert "error" in answers[0].json()


def test_fail_deploy_ends_in_a_terminal_state(targon):
    sim = targon(fail_deploy=True)

    async def scenario():
        async with client(sim) as api:
            uid = await api.create(request())
            await api.deploy(uid)
            state = await wait_for(lambda: api.state(uid), lambda s: s.terminal)
            assert state.status == "failed" and state.message and state.url is None
            assert not state.running and state.ready_replicas == 0
            assert sim.workloads[uid].server is None
            assert await api.delete(uid) is True

    asyncio.run(scenario())


def test_lost_workload_fails_and_its_service_stops(targon):
    sim = targon(lose_after=0.15)

    async def scenario():
        async with client(sim) as api:
            uid = await api.create(request())
            await api.deploy(uid)
            running = await wait_for(lambda: api.state(uid), lambda s: s.running)
            with httpx.Client(timeout=2.0, trust_env=False) as pooled:  # keeps its connection open
                assert health(running.url, pooled) == 200
                lost = await wait_for(lambda: api.state(uid), lambda s: s.terminal)
                assert lost.status == "failed" and "lost" in lost.message and lost.url is None
                assert health(running.url, pooled) != 200
            assert health(running.url) == "ConnectError"
            [item] = await api.list()
            assert (item.status, item.url) == ("failed", None)

    asyncio.run(scenario())


def test_health_delay_keeps_the_service_warming(targon):
    sim = targon(url_delay=0, health_delay=0.3)

    async def scenario():
        async with client(sim) as api:
            uid = await api.create(request())
            answer = await api.deploy(uid)  # url_delay 0: running at once
            assert answer["state"]["status"] == "running"
            url = answer["state"]["urls"][0]["url"]
            assert health(url) == 503
            deadline = time.monotonic() + WAIT
            while health(url) != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)

    asyncio.run(scenario())


def test_5xx_bursts_are_retried_and_every_call_ends_well(targon):
    sim = targon(url_delay=0, fail_rate=0.4, fail_status=503, seed=7)
    policy = RetryPolicy(attempts=10, base=0.001, cap=0.002)

    async def scenario():
        async with client(sim, policy=policy) as api:
            uid = await api.create(request())  # 503 says "not done": create retries it too
            await api.deploy(uid)
            for _ in range(5):
                assert (await api.state(uid)).running
            assert [w.uid for w in await api.list()] == [uid]
            assert await api.delete(uid) is True
            await wait_for(lambda: api.state(uid), lambda s: s is None)
            return uid

    uid = asyncio.run(scenario())
    assert sim.stats.requests > 10  # some of them were injected failures
    assert len(sim.workloads) == 1 and sim.workloads[uid].deleted


def test_create_is_not_retried_when_it_may_have_been_done(targon):
    for knobs in ({"fail_rate": 1.0, "fail_status": 500}, {"drop_rate": 1.0}):
        sim = targon(**knobs)

        async def scenario():
            async with client(sim) as api:
                with pytest.raises(TargonError) as created:
                    await api.create(request())
                with pytest.raises(TargonError) as listed:
                    await api.list()
            return created.value, listed.value

        created, listed = asyncio.run(scenario())
        assert created.status_code == listed.status_code == knobs.get("fail_status")
        assert sim.stats.by_path == {"/tha/v2/workloads": 1 + FAST.attempts}


def test_stop_stops_every_backing_service(targon):
    sim = targon(url_delay=0)

    async def scenario():
        async with client(sim) as api:
            urls = []
            for name in ("a", "b"):
                uid = await api.create(request(name))
                urls.append((await api.deploy(uid))["state"]["urls"][0]["url"])
            return urls

    urls = asyncio.run(scenario())
    assert [health(u) for u in urls] == [200, 200]
    assert len(sim.live_workloads()) == 2
    sim.stop()
    assert [health(u) for u in urls] == ["ConnectError", "ConnectError"]


def test_services_are_chosen_by_image(targon):
    seen = []

    def factory(args, envs, knobs):
        seen.append((args, envs, knobs.health_delay))
        server = SimServer(("127.0.0.1", 0), HealthHandler, knobs.faults)
        server.healthy_at = 0.0
        server.warming_status = 503
        return server

    registration = services.register("example.org/custom:*", factory)
    try:
        assert services.service_for_image("example.org/custom:1") is factory
        assert services.service_for_image("example.org/other:1") is services.health_service
        sim = targon(url_delay=0, health_delay=0.5)

        async def scenario():
            async with client(sim) as api:
                for image in ("example.org/custom:1", "example.org/other:1"):
                    await api.deploy(await api.create(request(image=image)))

        asyncio.run(scenario())
    finally:
        services.unregister(registration)
    assert seen == [(["--x"], {"A": "1"}, 0.5)]
    assert services.service_for_image("example.org/custom:1") is services.health_service


def test_api_key_stays_out_of_logs_over_real_http(targon, caplog):
    caplog.set_level(logging.DEBUG)
    sim = targon(api_key=KEY, fail_rate=0.5, seed=3)
    policy = RetryPolicy(attempts=8, base=0.001, cap=0.002)

    async def scenario():
        async with client(sim, policy=policy) as api:
            await api.list()
            assert KEY not in repr(api)
        async with client(sim, key="wrong-" + KEY) as api:
            with pytest.raises(TargonError) as info:
                await api.list()
        return info.value

    error = asyncio.run(scenario())
    assert caplog.records
    assert KEY not in caplog.text and KEY not in str(error) and KEY not in repr(error)


@contextlib.contextmanager
def command_line_targon(*flags: str):
    """`python -m runner404.sim targon --port 0 FLAGS…` as a child process; yields its URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "runner404.sim", "targon", "--port", "0", *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=10)
        assert line.startswith("listening on http://127.0.0.1:"), (line, process.poll())
        yield line.split()[-1]
    finally:
        stop_process(process)
    assert process.returncode == 0


def test_command_line_stand_in_serves_the_list():
    with command_line_targon("--api-key", KEY, "--url-delay", "0") as url:
        async def scenario():
            async with TargonClient(KEY, url + "/", retry_policy=FAST) as api:
                uid = await api.create(request())
                answer = await api.deploy(uid)
                assert answer["state"]["status"] == "running"
                [item] = await api.list()
                assert item.uid == uid and item.url.startswith("http://127.0.0.1:")
                assert health(item.url) == 200
                assert await api.delete(uid) is True

        asyncio.run(scenario())


def test_command_line_stand_in_passes_knobs_and_options_to_its_backing_services():
    flags = ("--url-delay", "0", "--health-delay", "60", "--service-option", "warming_status=429",
             "--service-knob", "latency=0.2")
    with command_line_targon(*flags) as url:
        async def scenario():
            async with TargonClient(KEY, url + "/", retry_policy=FAST) as api:
                uid = await api.create(request())
                service = (await api.deploy(uid))["state"]["urls"][0]["url"]
                started = time.monotonic()
                assert health(service) == 429  # the option: warming answers 429, not the default 503
                assert time.monotonic() - started >= 0.2  # the knob: every request waits its latency
                assert await api.delete(uid) is True

        asyncio.run(scenario())


@pytest.mark.parametrize(("flag", "message"), [
    ("latncy=1", "unknown knob 'latncy' (known: latency, capacity,"),
    ("capacity=two", "capacity must be an integer, got 'two'"),
    ("latency", "expected KEY=VALUE, got 'latency'"),
])
def test_command_line_stand_in_rejects_bad_service_knobs(flag, message):
    done = subprocess.run([sys.executable, "-m", "runner404.sim", "targon", "--service-knob", flag],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
