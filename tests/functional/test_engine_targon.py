"""The engine against the Targon stand-in: deploy, health, stage, teardown; nothing leaked."""

from __future__ import annotations

import os
import re
import signal

import pytest

from engine_helpers import events, interrupt, start, targon_manifest, tree, wait_for_event
from runner404.sim.http import Knobs
from runner404.sim.targon import start_targon

KEY = "tgn-canary-4c1d9e"


@pytest.fixture
def targon():
    sim = start_targon(api_key=KEY, url_delay=0.1, delete_delay=0.05)
    yield sim
    sim.stop()


def _run(cli, folder, sim, *extra):
    return cli(["run", "m.yaml", "--targon-url", sim.url, *extra], cwd=folder,
               environ={"RUNNER404_TEST_TARGON_KEY": KEY})


def test_deploy_health_stage_teardown(tmp_path, cli, targon):
    targon_manifest(tmp_path, modules=3)
    result = _run(cli, tmp_path, targon)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out/render").glob("*.png")) == ["m000.png", "m001.png", "m002.png"]
    assert targon.live_workloads() == []
    names = [e["event"] for e in events(tmp_path)]
    assert names.index("pod_created") < names.index("pod_ready") < names.index("item_done") < names.index("pod_stopped")
    (workload,) = targon.workloads.values()
    assert workload.name == "engine-test-renderer" and workload.status == "deleted"


def test_a_rerun_contacts_no_pod(tmp_path, cli, targon):
    targon_manifest(tmp_path, modules=2)
    assert _run(cli, tmp_path, targon).exit_code == 0
    requests = targon.stats.requests
    assert _run(cli, tmp_path, targon).exit_code == 0
    assert targon.stats.requests == requests


def test_no_workload_is_left_after_a_failed_run(tmp_path, cli, targon):
    targon_manifest(tmp_path, modules=2)
    (tmp_path / "js/m000.js").write_text("export default function generate(THREE) { return fetch('x'); }\n")
    assert _run(cli, tmp_path, targon).exit_code == 4
    assert targon.live_workloads() == []


def test_slow_start_within_the_window_succeeds(tmp_path, cli):
    sim = start_targon(api_key=KEY, url_delay=0.3, health_delay=1.0, delete_delay=0.05)
    try:
        targon_manifest(tmp_path, modules=1, health_timeout="10s")
        assert _run(cli, tmp_path, sim).exit_code == 0
        assert sim.live_workloads() == []
    finally:
        sim.stop()


def test_slow_start_past_the_window_fails_cleanly_and_deletes_the_pod(tmp_path, cli):
    sim = start_targon(api_key=KEY, url_delay=0.1, health_delay=30.0, delete_delay=0.05)
    try:
        (tmp_path / "m.yaml").write_text(POD_ONLY)
        result = _run(cli, tmp_path, sim)
        assert result.exit_code == 3
        assert re.search(r"/health not healthy within 1s \(last: HTTP 503\)", result.stdout)
        assert sim.live_workloads() == []
        assert len(sim.workloads) == 1
    finally:
        sim.stop()


POD_ONLY = """\
version: 1
name: engine-test
secrets:
  targon: {env: RUNNER404_TEST_TARGON_KEY}
provider: {type: targon, api_key: "${{ secrets.targon }}"}
pods:
  svc: {image: example.org/svc:1, resource: cpu-small, health: {path: /health, timeout: 1s, interval: 0.05s}}
stages:
  start: {uses: pod, pod: svc}
"""


def test_a_failed_deploy_is_reported_and_deleted(tmp_path, cli):
    sim = start_targon(api_key=KEY, url_delay=0.1, fail_deploy=True, delete_delay=0.05)
    try:
        targon_manifest(tmp_path, modules=1)
        result = _run(cli, tmp_path, sim)
        assert result.exit_code == 3
        assert "is failed" in result.stdout
        assert sim.live_workloads() == []
    finally:
        sim.stop()


def test_ctrl_c_of_a_real_process_leaves_no_workload(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.1, delete_delay=0.05, service_knobs=Knobs(latency=0.2))
    try:
        targon_manifest(tmp_path, modules=6)
        env = {"RUNNER404_TEST_TARGON_KEY": KEY, "TARGON_API_URL": sim.url}
        process = start(tmp_path, env=env)
        wait_for_event(tmp_path, "item_done")
        code, out, err = interrupt(process)
        assert code == 130, err
        assert "resume with: 404-run run m.yaml --progress plain" in err
        assert sim.live_workloads() == []
        resumed = start(tmp_path, env=env)
        out, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err
        assert sim.live_workloads() == []
        assert len(sim.workloads) == 2
    finally:
        sim.stop()


def test_ctrl_c_during_pod_warm_up_deletes_the_pod(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.1, health_delay=60.0, delete_delay=0.05)
    try:
        targon_manifest(tmp_path, modules=1, health_timeout="120s")
        process = start(tmp_path, env={"RUNNER404_TEST_TARGON_KEY": KEY, "TARGON_API_URL": sim.url})
        wait_for_event(tmp_path, "pod_health")
        code, out, err = interrupt(process)
        assert code == 130, err
        assert sim.live_workloads() == []
        assert len(sim.workloads) == 1
    finally:
        sim.stop()


def test_the_api_key_is_nowhere_on_disk_or_in_output(tmp_path, cli, targon):
    targon_manifest(tmp_path, modules=2)
    result = _run(cli, tmp_path, targon)
    assert result.exit_code == 0
    assert KEY not in result.stdout + result.stderr
    for path, data in tree(tmp_path).items():
        assert KEY.encode() not in data, path
    assert KEY not in os.environ.get("RUNNER404_TEST_TARGON_KEY", "")


def test_a_kept_pod_is_reused_by_the_next_run(tmp_path, cli, targon):
    targon_manifest(tmp_path, modules=2)
    path = tmp_path / "m.yaml"
    path.write_text(path.read_text() + "  start:\n    uses: pod\n    pod: renderer\n")
    first = _run(cli, tmp_path, targon)
    assert first.exit_code == 0, first.stdout
    assert "start: engine-test-renderer: http://127.0.0.1:" in first.stdout
    (kept,) = targon.live_workloads()
    second = _run(cli, tmp_path, targon, "--force")
    assert second.exit_code == 0
    assert targon.live_workloads() == [kept] and len(targon.workloads) == 1
    assert any(e["event"] == "pod_ready" and e["reused"] for e in events(tmp_path))


def test_stop_pods_by_name_prefix_and_ownership(tmp_path, cli, targon):
    targon_manifest(tmp_path, modules=1)
    path = tmp_path / "m.yaml"
    path.write_text(path.read_text() + "  start:\n    uses: pod\n    pod: renderer\n")
    assert _run(cli, tmp_path, targon).exit_code == 0
    client_request = {"type": "SERVERLESS", "image": "example.org/x:1", "resource_name": "cpu-small",
                      "ports": [{"port": 8000, "protocol": "TCP"}],
                      "serverless_config": {"min_replicas": 1, "max_replicas": 1, "container_concurrency": 1,
                                            "target_concurrency": 1, "visibility": "external"}}
    import httpx

    for name in ("generator", "judge-old", "someone-else"):
        httpx.post(f"{targon.url}/tha/v2/workloads", json={**client_request, "name": name},
                   headers={"Authorization": f"Bearer {KEY}"}).raise_for_status()
    (tmp_path / "stop.yaml").write_text(
        path.read_text().split("pods:")[0] + "stages:\n  stop:\n    uses: stop-pods\n"
        "    names: [generator]\n    prefix: judge-\n    owned: true\n")
    result = cli(["run", "stop.yaml", "--targon-url", targon.url], cwd=tmp_path,
                 environ={"RUNNER404_TEST_TARGON_KEY": KEY})
    assert result.exit_code == 0, result.stdout
    assert sorted(w.name for w in targon.live_workloads()) == ["someone-else"]
    for name in ("generator", "judge-old", "engine-test-renderer"):
        assert re.search(rf"stop: {name} \(wrk-[0-9a-f]+\): deleted", result.stdout)


def test_targon_api_faults_are_retried(tmp_path, cli):
    sim = start_targon(api_key=KEY, url_delay=0.1, delete_delay=0.05, fail_rate=0.2, seed=3)
    try:
        targon_manifest(tmp_path, modules=2)
        result = _run(cli, tmp_path, sim)
        assert result.exit_code == 0, result.stdout
        assert sim.live_workloads() == []
    finally:
        sim.stop()


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    # teardown would wait a minute for the workload to be gone; the second Ctrl-C must not
    sim = start_targon(api_key=KEY, url_delay=0.1, health_delay=60.0, delete_delay=60.0)
    try:
        targon_manifest(tmp_path, modules=1, health_timeout="120s")
        process = start(tmp_path, env={"RUNNER404_TEST_TARGON_KEY": KEY, "TARGON_API_URL": sim.url})
        wait_for_event(tmp_path, "pod_health")
        process.send_signal(signal.SIGINT)
        wait_for_event(tmp_path, "pod_stopping")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)  # well before the 60 s teardown
        assert process.returncode == 130
        assert "exiting now; resume with: 404-run run m.yaml --progress plain" in err
    finally:
        sim.stop()


def test_workloads_of_a_killed_run_are_cleaned_up_by_the_next(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.1, health_delay=60.0, delete_delay=0.05)
    try:
        targon_manifest(tmp_path, modules=1, health_timeout="120s")
        env = {"RUNNER404_TEST_TARGON_KEY": KEY, "TARGON_API_URL": sim.url}
        process = start(tmp_path, env=env)
        wait_for_event(tmp_path, "pod_health")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert len(sim.live_workloads()) == 1  # leaked: nothing can clean up after SIGKILL
        (tmp_path / "js/m000.js").unlink()  # the next run needs no renderer
        result = start(tmp_path, env=env)
        out, err = result.communicate(timeout=30)
        assert result.returncode == 0, err
        assert "deleting wrk-" in err and sim.live_workloads() == []
    finally:
        sim.stop()
