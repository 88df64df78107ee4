"""Targon REST client without a network: runner404.pods.targon_api over httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback

import httpx
import pytest

from runner404.engine.retry import RetryPolicy
from runner404.errors import InfraError, UsageError
from runner404.pods.targon_api import (TargonClient, TargonError, WorkloadInfo, WorkloadState,
                                       build_create_request)
from runner404.secret import Secret

CANARY = "canary-7f3c9e1d-DO-NOT-LEAK"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)
BASE = "https://targon.test"

# The 404-style example body of reference protocols.md §4.3, byte for byte.
REFERENCE_BODY = (
    '{"type":"SERVERLESS","name":"generator","image":"img:1","resource_name":"h200-small",'
    '"envs":[{"name":"A","value":"1"}],"args":["x"],"ports":[{"port":10006,"protocol":"TCP"}],'
    '"serverless_config":{"min_replicas":1,"max_replicas":1,"container_concurrency":1,'
    '"target_concurrency":1,"visibility":"external"}}'
)


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def client(handler, **kwargs) -> TargonClient:
    kwargs.setdefault("retry_policy", FAST)
    return TargonClient(kwargs.pop("api_key", CANARY), kwargs.pop("base_url", BASE),
                        transport=httpx.MockTransport(handler), **kwargs)


def run(coro_fn, *args):
    """Run `coro_fn(targon, *args)`-style scenarios: a plain asyncio.run, no plugin."""
    return asyncio.run(coro_fn(*args))


def json_response(status: int, payload) -> httpx.Response:
    return httpx.Response(status, json=payload)


# -- build_create_request ------------------------------------------------------------------------


def test_build_create_request_is_the_reference_body_exactly():
    body = build_create_request("generator", "img:1", "h200-small", 10006, args=["x"], env={"A": "1"})
    assert compact(body) == REFERENCE_BODY


def test_build_create_request_omits_empty_optional_fields():
    body = build_create_request("render", "img:2", "cpu-small", 8000)
    assert body == {
        "type": "SERVERLESS", "name": "render", "image": "img:2", "resource_name": "cpu-small",
        "ports": [{"port": 8000, "protocol": "TCP"}],
        "serverless_config": {"min_replicas": 1, "max_replicas": 1, "container_concurrency": 1,
                              "target_concurrency": 1, "visibility": "external"},
    }
    assert "envs" not in build_create_request("r", "i", "cpu-small", 1, args=(), env={})


def test_build_create_request_replicas_concurrency_and_env_values():
    token = Secret(("hf",), lambda: "hf-value")
    body = build_create_request("judge", "vllm/vllm-openai:v0.20.0", "rtx6000b-small", 8000,
                                args=("m", "--port", "8000"), env={"HF_TOKEN": token, "N": 2},
                                replicas=2, container_concurrency=4)
    assert body["envs"] == [{"name": "HF_TOKEN", "value": "hf-value"}, {"name": "N", "value": "2"}]
    assert body["args"] == ["m", "--port", "8000"]
    assert body["serverless_config"] == {"min_replicas": 2, "max_replicas": 2, "container_concurrency": 4,
                                         "target_concurrency": 1, "visibility": "external"}


@pytest.mark.parametrize("kwargs", [
    {"port": 0}, {"port": 70000}, {"port": True}, {"replicas": 0}, {"container_concurrency": 0},
    {"name": ""}, {"image": ""}, {"resource": ""}, {"args": "x"},
])
def test_build_create_request_rejects_bad_values(kwargs):
    values = {"name": "n", "image": "i", "resource": "cpu-small", "port": 8000} | kwargs
    with pytest.raises(ValueError):
        build_create_request(**values)


# -- status helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize("status, terminal, running", [
    ("running", False, True), ("ready", False, True), ("active", False, True), ("deployed", False, True),
    ("verified", False, True), ("failed", True, False), ("error", True, False), ("stopped", True, False),
    ("deleted", True, False), ("terminated", True, False), ("suspended", True, False),
    ("pending", False, False), ("deploying", False, False), ("something-new", False, False),
])
def test_status_classification(status, terminal, running):
    state = WorkloadState("wrk-1", status, "", None, 0, 0)
    info = WorkloadInfo("wrk-1", "n", status, None, None)
    assert (state.terminal, state.running) == (terminal, running)
    assert (info.terminal, info.running) == (terminal, running)


# -- requests and parsing ----------------------------------------------------------------------------


def test_headers_base_url_and_paths():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST" and request.url.path.endswith("/tha/v2/workloads"):
            return json_response(200, {"uid": "wrk-abc"})
        if request.url.path.endswith("/deploy"):
            return json_response(200, {"uid": "wrk-abc", "name": "g", "cost_per_hour": 1.0,
                                       "state": {"status": "deploying", "message": "", "urls": []}})
        return json_response(200, {})

    async def scenario():
        async with client(handler, base_url=BASE + "/prefix//") as targon:
            assert targon.base_url == BASE + "/prefix"
            assert await targon.create(build_create_request("g", "i", "cpu-small", 8000)) == "wrk-abc"
            assert (await targon.deploy("wrk-abc"))["state"]["status"] == "deploying"
            assert await targon.delete("wrk/../x") is True

    run(scenario)
    create, deploy, delete = seen
    for request in seen:
        assert request.headers["Authorization"] == f"Bearer {CANARY}"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Content-Type"] == "application/json"
    assert str(create.url) == BASE + "/prefix/tha/v2/workloads"
    assert json.loads(create.content)["type"] == "SERVERLESS"
    assert (deploy.method, deploy.url.path, deploy.content) == ("POST", "/prefix/tha/v2/workloads/wrk-abc/deploy", b"")
    assert delete.method == "DELETE"
    assert delete.url.raw_path == b"/prefix/tha/v2/workloads/wrk%2F..%2Fx"


def test_list_drops_deleted_falls_back_to_state_urls_and_follows_cursors():
    pages = {
        None: {"items": [
            {"uid": "wrk-1", "name": "a", "urls": [{"port": 1, "url": "https://a"}],
             "state": {"status": "RUNNING", "urls": [{"port": 1, "url": "https://ignored"}]},
             "cost_per_hour": 1, "created_at": "2026-01-01T00:00:00Z"},
            {"uid": "wrk-2", "name": "b", "state": {"status": "running", "urls": [{"port": 1, "url": "https://b"}]}},
            {"uid": "wrk-3", "name": "c", "urls": [], "state": {"status": "deleted", "urls": []}},
        ], "next_cursor": "p2"},
        "p2": {"items": [{"uid": "wrk-4", "name": "d", "urls": [], "state": {"status": "pending", "urls": []}},
                         {"uid": "wrk-1", "name": "a", "state": {"status": "running"}}],
               "next_cursor": "p2"},  # a repeated cursor must not loop
    }
    calls: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        return json_response(200, pages[params.get("cursor")])

    items = run(lambda: _list(handler))
    assert calls == [{"type": "SERVERLESS"}, {"type": "SERVERLESS", "cursor": "p2"}]
    assert items == [
        WorkloadInfo("wrk-1", "a", "running", "https://a", "2026-01-01T00:00:00Z"),
        WorkloadInfo("wrk-2", "b", "running", "https://b", None),
        WorkloadInfo("wrk-4", "d", "pending", None, None),
    ]


async def _list(handler):
    async with client(handler) as targon:
        return await targon.list()


def test_state_delete_and_404():
    def handler(request: httpx.Request) -> httpx.Response:
        if "wrk-gone" in request.url.path:
            return json_response(404, {"error": "not found"})
        if request.method == "DELETE":
            return httpx.Response(200)  # an empty body is accepted for delete
        return json_response(200, {"uid": "wrk-1", "workload_type": "SERVERLESS", "status": "running",
                                   "message": "ok", "urls": [{"port": 8000, "url": "https://x"}],
                                   "ready_replicas": 1, "total_replicas": 1, "updated_at": "t"})

    async def scenario():
        async with client(handler) as targon:
            assert await targon.state("wrk-1") == WorkloadState("wrk-1", "running", "ok", "https://x", 1, 1)
            assert await targon.state("wrk-gone") is None
            assert await targon.delete("wrk-1") is True
            assert await targon.delete("wrk-gone") is False
            with pytest.raises(TargonError) as info:
                await targon.deploy("wrk-gone")
            assert info.value.status_code == 404

    run(scenario)


def test_non_json_answer_is_an_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>gateway</html>", headers={"Content-Type": "text/html"})

    async def scenario():
        async with client(handler) as targon:
            with pytest.raises(TargonError, match="expected JSON"):
                await targon.state("wrk-1")

    run(scenario)


def test_error_carries_status_and_a_short_excerpt():
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(400, {"error": "bad " + "x" * 2000})

    async def scenario():
        async with client(handler) as targon:
            with pytest.raises(TargonError) as info:
                await targon.create({"type": "SERVERLESS"})
        return info.value

    error = run(scenario)
    assert isinstance(error, InfraError)
    assert error.status_code == 400 and error.method == "POST" and error.path == "/tha/v2/workloads"
    assert len(error.body) <= 500 and error.body.startswith('{"error":"bad xxx')
    assert len(str(error)) < 700


# -- retries ---------------------------------------------------------------------------------------


def scripted(*outcomes):
    """A handler answering with `outcomes` in turn (an exception class is raised), counting calls."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(request)
        if isinstance(outcome, type) and issubclass(outcome, Exception):
            raise outcome("scripted", request=request)
        return outcome

    return handler, calls


OK_CREATE = httpx.Response(200, json={"uid": "wrk-ok"})


@pytest.mark.parametrize("first, retried", [
    (httpx.ConnectError, True), (httpx.ConnectTimeout, True),
    (httpx.Response(429, json={}), True), (httpx.Response(430, json={}), True),
    (httpx.Response(503, json={}), True),
    (httpx.ReadTimeout, False), (httpx.RemoteProtocolError, False),
    (httpx.Response(500, json={}), False), (httpx.Response(502, json={}), False),
    (httpx.Response(504, json={}), False), (httpx.Response(400, json={}), False),
])
def test_create_is_retried_only_when_the_request_was_not_acted_on(first, retried):
    handler, calls = scripted(first, OK_CREATE)

    async def scenario():
        async with client(handler) as targon:
            return await targon.create(build_create_request("g", "i", "cpu-small", 8000))

    if retried:
        assert run(scenario) == "wrk-ok"
        assert len(calls) == 2
    else:
        with pytest.raises(TargonError):
            run(scenario)
        assert len(calls) == 1


@pytest.mark.parametrize("first", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ConnectError,
                                   httpx.Response(500, json={}), httpx.Response(502, json={}),
                                   httpx.Response(429, json={})])
def test_idempotent_calls_are_retried_on_transient_failures(first):
    ok = httpx.Response(200, json={"uid": "wrk-1", "status": "running", "urls": []})
    handler, calls = scripted(first, ok)

    async def scenario():
        async with client(handler) as targon:
            return await targon.state("wrk-1")

    assert run(scenario).status == "running"
    assert len(calls) == 2


def test_retries_stop_after_the_policy_and_raise_a_targon_error():
    handler, calls = scripted(httpx.Response(502, json={"error": "bad gateway"}))

    async def scenario():
        async with client(handler, retry_policy=RetryPolicy(attempts=4, base=0.001, cap=0.001)) as targon:
            await targon.list()

    with pytest.raises(TargonError) as info:
        run(scenario)
    assert info.value.status_code == 502 and len(calls) == 4

    handler, calls = scripted(httpx.ConnectError)
    with pytest.raises(TargonError, match="connection error") as info:
        run(scenario)
    assert info.value.status_code is None and len(calls) == 4


def test_client_errors_are_not_retried():
    handler, calls = scripted(httpx.Response(401, json={"error": "unauthorized"}))

    async def scenario():
        async with client(handler) as targon:
            await targon.list()

    with pytest.raises(TargonError) as info:
        run(scenario)
    assert info.value.status_code == 401 and len(calls) == 1


# -- the API key never leaks ---------------------------------------------------------------------


def _texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error)), repr(vars(error))]


def test_api_key_never_appears_in_errors_logs_or_reprs(caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["Authorization"]  # a server echoing the key back
        if request.url.path.endswith("/state"):
            raise httpx.ConnectError(f"refused while sending {echoed}", request=request)
        if request.method == "DELETE":
            return httpx.Response(200, text=f"not json {echoed}", headers={"Content-Type": "text/plain"})
        if request.method == "GET":
            return json_response(503, {"error": f"busy: {echoed}"})
        return json_response(400, {"error": f"rejected {echoed}", "headers": dict(request.headers)})

    errors: list[BaseException] = []

    async def scenario():
        async with client(handler) as targon:
            assert CANARY not in repr(targon) and CANARY not in str(targon)
            assert CANARY not in repr(targon._http.headers)
            for call in (lambda: targon.create({"type": "SERVERLESS"}), lambda: targon.list(),
                         lambda: targon.state("wrk-1"), lambda: targon.delete("wrk-1")):
                try:
                    await call()
                except TargonError as exc:
                    errors.append(exc)

    run(scenario)
    assert len(errors) == 4
    for error in errors:
        for text in _texts(error):
            assert CANARY not in text
    assert "***" in errors[0].body
    assert caplog.records, "retries are logged"
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()


@pytest.mark.parametrize("key", ["", f"{CANARY}\nX-Injected: 1", f"{CANARY} x", f"{CANARY}\u00e9"])
def test_bad_api_keys_are_refused_without_echoing_them(key):
    with pytest.raises(UsageError) as info:
        TargonClient(key, BASE)
    for text in _texts(info.value):
        assert CANARY not in text


def test_secret_api_key_and_base_url_checks():
    async def scenario():
        secret = Secret(("targon",), lambda: CANARY)
        seen = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers["Authorization"])
            return json_response(200, {"items": []})

        async with TargonClient(secret, BASE + "/", transport=httpx.MockTransport(handler)) as targon:
            assert await targon.list() == []
            assert targon.base_url == BASE
        assert seen == [f"Bearer {CANARY}"]

    run(scenario)
    with pytest.raises(UsageError):
        TargonClient(CANARY, "api.targon.com")
