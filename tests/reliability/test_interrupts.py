"""Ctrl-C (SIGINT) during pod warm-up, during items and during teardown, against the stand-in Targon.

Each time: the runner exits 130, prints the command that resumes, and leaves no workload on the
stand-in Targon; the printed command, run as printed, then finishes the work (exit 0) and again
leaves no workload.
"""

from __future__ import annotations

import shlex
import signal
import time


from reliability_helpers import RUNNER, assert_clean_output, events, finish, start, wait_for, write_modules
from runner404.sim.http import Knobs
from runner404.sim.targon import start_targon

KEY = "tgn-interrupt-key"
MANIFEST = """\
version: 1
name: interrupt
secrets:
  targon: {env: RUNNER404_TEST_TARGON_KEY}
provider: {type: targon, api_key: "${{ secrets.targon }}"}
pods:
  renderer:
    preset: renderer
    health: {path: /health, timeout: 60s, interval: 0.1s}
stages:
  render: {uses: render, pod: renderer, input: js/, img_size: 32, concurrency: 2}
"""


def _setup(folder, modules=6):
    folder.mkdir(exist_ok=True)
    write_modules(folder / "js", modules)
    (folder / "m.yaml").write_text(MANIFEST)


def _env(sim):
    return {"RUNNER404_TEST_TARGON_KEY": KEY, "TARGON_API_URL": sim.url}


def _resume_command(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if "resume with: " in line]
    assert lines, f"no resume command printed:\n{stderr[-2000:]}"
    argv = shlex.split(lines[-1].split("resume with: ", 1)[1])
    assert argv[0] == "404-run"
    return argv


def _interrupt_and_resume(folder, sim, trigger, what):
    process = start(folder, env=_env(sim))
    wait_for(lambda: trigger(events(folder)) or process.poll() is not None, timeout=60, what=what)
    assert process.poll() is None, f"the run ended before {what}"
    process.send_signal(signal.SIGINT)
    done = finish(process, timeout=60, what="the interrupted run")
    assert done.code == 130, f"exit {done.code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert_clean_output(done)
    assert [w.name for w in sim.live_workloads()] == []  # none left, not even terminating
    argv = _resume_command(done.stderr)
    resumed = finish(_start_argv(folder, argv, sim), timeout=90, what="the resume command")
    assert resumed.code == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert_clean_output(resumed)
    assert [w.name for w in sim.live_workloads()] == []
    assert sorted(p.name for p in (folder / "out/render").glob("*.png")) == [f"m{i:03d}.png" for i in range(6)]
    return done


def _start_argv(folder, argv, sim):
    import subprocess

    from reliability_helpers import runner_env

    return subprocess.Popen([RUNNER, *argv[1:]], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=runner_env(_env(sim)), start_new_session=True)


def test_ctrl_c_during_pod_warm_up(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.1, health_delay=2.0, delete_delay=0.2)
    try:
        _setup(tmp_path)
        _interrupt_and_resume(
            tmp_path, sim, lambda evs: any(e["event"] in ("pod_health", "pod_waiting") for e in evs),
            "the pod warm-up")
        assert len(sim.workloads) == 2  # the interrupted one (deleted) and the resume's
    finally:
        sim.stop()


def test_ctrl_c_during_items(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.1, delete_delay=0.2, service_knobs=Knobs(latency=0.15))
    try:
        _setup(tmp_path)
        done = _interrupt_and_resume(
            tmp_path, sim, lambda evs: any(e["event"] == "item_done" for e in evs), "a first item")
        assert "interrupted" in done.stderr
    finally:
        sim.stop()


def test_ctrl_c_during_teardown(tmp_path):
    sim = start_targon(api_key=KEY, url_delay=0.1, delete_delay=2.0)
    try:
        _setup(tmp_path)
        _interrupt_and_resume(
            tmp_path, sim, lambda evs: any(e["event"] == "pod_stopping" for e in evs), "the teardown")
    finally:
        sim.stop()


def test_a_second_ctrl_c_exits_at_once_and_the_next_run_cleans_up(tmp_path):
    """The documented escape hatch: Ctrl-C twice exits immediately (130); the workload it may
    leave is deleted by the next run, which also finishes the work."""
    sim = start_targon(api_key=KEY, url_delay=0.1, delete_delay=1.0, service_knobs=Knobs(latency=0.15))
    try:
        _setup(tmp_path)
        process = start(tmp_path, env=_env(sim))
        wait_for(lambda: any(e["event"] == "item_done" for e in events(tmp_path)), timeout=60, what="an item")
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        done = finish(process, timeout=30)
        assert done.code == 130
        assert "resume with: 404-run run m.yaml" in done.stderr
        resumed = finish(start(tmp_path, env=_env(sim)), timeout=90)
        assert resumed.code == 0, resumed.stdout[-2000:]
        wait_for(lambda: sim.live_workloads() == [], timeout=10, what="every workload gone")
    finally:
        sim.stop()
