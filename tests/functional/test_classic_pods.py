"""start-generator, start-renderer, start-judge and stop-pods against the Targon stand-in."""

from __future__ import annotations

import http.server
import json
import threading

import httpx
import pytest

from conftest import run_cli
from runner404.pods.presets import JUDGE_ARGS, JUDGE_IMAGE, RENDERER_IMAGE
from runner404.sim.targon import start_targon

KEY = "tgn-classic-test-key"
GENERATOR = "runner404-sim/generator:good"


@pytest.fixture
def sim():
    server = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02)
    yield server
    server.stop()


def cli(argv, cwd, sim_url, key=KEY):
    return run_cli([*argv, "--targon-api-key", key, "--targon-url", sim_url], cwd=cwd, tool="404-cli")


def one_json(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def no_key_anywhere(folder):
    for path in (folder / ".runner404").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_start_the_classic_pods_then_stop_them(tmp_path, sim):
    started = cli(["start-generator", "--image-url", GENERATOR], tmp_path, sim.url)
    assert started.exit_code == 0, started.stdout + started.stderr
    url = one_json(started)["container_url"]
    assert one_json(started) == {"success": True, "container_url": url}
    assert f"Starting generator: {GENERATOR}" in started.stderr
    assert httpx.get(f"{url}/health").status_code == 200  # kept running after the command

    again = cli(["start-generator", "--image-url", GENERATOR], tmp_path, sim.url)  # healthy: reused
    assert one_json(again)["container_url"] == url
    for command in ("start-renderer", "start-judge"):
        result = cli([command], tmp_path, sim.url)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert one_json(result)["success"]
    pods = {w.name: w for w in sim.live_workloads()}
    assert sorted(pods) == ["generator", "judge", "render"]
    assert (pods["generator"].resource_name, pods["generator"].request["ports"][0]["port"]) == ("h200-large", 10006)
    assert (pods["render"].image, pods["render"].resource_name) == (RENDERER_IMAGE, "cpu-small")
    assert (pods["judge"].image, pods["judge"].resource_name) == (JUDGE_IMAGE, "rtx6000b-small")
    assert pods["judge"].request["args"] == JUDGE_ARGS
    other = sim.create({"name": "generator_old", "image": GENERATOR, "resource_name": "cpu-small"})

    stopped = cli(["stop-pods"], tmp_path, sim.url)
    assert stopped.exit_code == 0, stopped.stdout + stopped.stderr
    result = one_json(stopped)
    assert sorted(p["name"] for p in result["stopped"]) == ["generator", "judge", "render"]
    assert "Stopping pods..." in stopped.stderr
    for name in ("generator", "render", "judge"):
        assert f"{name} ({pods[name].uid}): deleted" in stopped.stderr
    assert [w.uid for w in sim.live_workloads()] == [other.uid]  # exact names only
    assert one_json(cli(["stop-pods"], tmp_path, sim.url)) == {"success": True, "stopped": []}
    no_key_anywhere(tmp_path)


def test_the_printed_manifest_starts_the_same_pod(tmp_path, sim):
    classic_dir, manifest_dir = tmp_path / "classic", tmp_path / "manifest"
    classic_dir.mkdir()
    manifest_dir.mkdir()
    assert cli(["start-judge"], classic_dir, sim.url).exit_code == 0
    printed = run_cli(["start-judge", "--targon-api-key", KEY, "--print-manifest"], cwd=manifest_dir, tool="404-cli")
    (manifest_dir / "m.yaml").write_text(printed.stdout)
    result = run_cli(["run", "m.yaml", "--targon-url", sim.url], cwd=manifest_dir, environ={"TARGON_API_KEY": KEY})
    assert result.exit_code == 0, result.stdout + result.stderr
    first, second = sim.live_workloads()  # both kept
    assert first.request == second.request and first.name == "judge"


def test_a_failed_deploy_is_an_error_and_leaves_nothing_running(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02, fail_deploy=True)
    try:
        result = cli(["start-renderer"], tmp_path, sim.url)
        assert result.exit_code == 1
        error = one_json(result)
        assert error["success"] is False and "deploy failed" in error["error"]
        assert sim.live_workloads() == []  # D10
    finally:
        sim.stop()


def test_a_wrong_key_is_an_error_json(tmp_path, sim):
    result = cli(["stop-pods"], tmp_path, sim.url, key="not-the-key")
    assert result.exit_code == 1
    assert "HTTP 401" in one_json(result)["error"]


class FakeTargon(http.server.BaseHTTPRequestHandler):
    """generator running (its delete is refused), render already stopped, judge running, and a
    workload whose name only starts with a classic name."""

    items = {"uid-g": ("generator", "running"), "uid-r": ("render", "stopped"), "uid-j": ("judge", "running"),
             "uid-x": ("generator-2", "running")}
    deleted: list[str] = []

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/tha/v2/workloads?"):
            items = [{"uid": uid, "name": name, "state": {"status": status, "urls": []}}
                     for uid, (name, status) in self.items.items() if uid not in self.deleted]
            return self.reply(200, {"items": items, "next_cursor": None})
        uid = self.path.split("/")[4]
        if uid in self.deleted or uid not in self.items:
            return self.reply(404, {"error": "not found"})
        return self.reply(200, {"uid": uid, "status": self.items[uid][1], "urls": []})

    def do_DELETE(self):
        uid = self.path.split("/")[4]
        if uid == "uid-g":
            return self.reply(403, {"error": "forbidden"})
        self.deleted.append(uid)
        return self.reply(200, {})


def test_stop_pods_skips_stopped_pods_and_fails_when_a_deletion_fails(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeTargon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = cli(["stop-pods"], tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    error = one_json(result)["error"]
    assert error.startswith("1 deletion(s) failed: generator (uid-g): ") and "403" in error
    assert "judge (uid-j): deleted" in result.stderr
    assert FakeTargon.deleted == ["uid-j"]  # not the stopped one, not generator-2
