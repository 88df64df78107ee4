"""Secret canary: a known secret value, given through the environment, a secret file the manifest
declares, and command-line options, must never be written under the state or output folders,
nor appear in the stdout or stderr of any command.

The value is used for real: it is the stand-in Targon's only accepted API key, it goes into a
Targon pod's environment (alone and inside a longer string) and into a local pod's environment.
Every file under .runner404/ and out/ is searched (the SQLite file and its WAL as raw bytes), for
the value itself and for its base64.
"""

from __future__ import annotations

import base64
import json
import shlex
import signal

import pytest

from reliability_helpers import STATE, cli, events, finish, start, wait_for, write_modules
from runner404.sim.targon import start_targon

CANARY = "rnr404-CANARY-9f1c7e2a55d0"
NEEDLES = [CANARY.encode(), base64.b64encode(CANARY.encode()), base64.b64encode(CANARY.encode()).rstrip(b"=")]

MANIFEST = """\
version: 1
name: canary
secrets:
  targon: {env: CANARY_TARGON_KEY}
  hf: {file: hf.txt}
provider: {type: targon, api_key: "${{ secrets.targon }}"}
pods:
  renderer:
    preset: renderer
    env: {HF_TOKEN: "${{ secrets.hf }}", AUTH: "Bearer ${{ secrets.hf }}"}
    health: {path: /health, timeout: 30s, interval: 0.05s}
  local-renderer:
    preset: renderer
    provider: local
    command: python -m runner404.sim renderer
    env: {HF_TOKEN: "${{ secrets.hf }}"}
stages:
  render: {uses: render, pod: renderer, input: js/, img_size: 32}
  render-local: {uses: render, pod: local-renderer, input: js/, img_size: 32}
"""


def _hits(folder) -> list[str]:
    found = []
    for root in (folder / STATE, folder / "out"):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path.relative_to(folder)}: {needle!r}" for needle in NEEDLES if needle in data]
    return found


def _text_hits(name: str, *texts: str) -> list[str]:
    return [f"{name}: {needle!r}" for text in texts for needle in NEEDLES if needle.decode() in text]


@pytest.fixture
def targon():
    sim = start_targon(api_key=CANARY, url_delay=0.05, delete_delay=0.05)
    yield sim
    sim.stop()


def _setup(folder):
    write_modules(folder / "js", 3)
    (folder / "hf.txt").write_text(CANARY + "\n")
    (folder / "m.yaml").write_text(MANIFEST)


def test_the_canary_never_reaches_state_outputs_or_output(tmp_path, targon):
    _setup(tmp_path)
    env = {"CANARY_TARGON_KEY": CANARY, "TARGON_API_URL": targon.url}
    leaks: list[str] = []
    commands = [
        ["validate", "m.yaml"],
        ["validate", "m.yaml", "--format", "json"],
        ["plan", "m.yaml"],
        ["plan", "m.yaml", "--format", "json"],
        ["graph", "m.yaml"],
        # the secret reaches a pod through a command-line override (the value itself is not on it)
        ["run", "m.yaml", "--progress", "plain", "--set", "pods.renderer.env.EXTRA=${{ secrets.hf }}"],
        ["run", "m.yaml", "--progress", "json", "--force", "--set", "pods.renderer.env.EXTRA=${{ secrets.hf }}"],
        ["status", "m.yaml"],
        ["status", "m.yaml", "--format", "json"],
    ]
    for argv in commands:
        done = cli(tmp_path, argv, env=env, timeout=120)
        assert done.code == 0, f"{argv}: exit {done.code}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        leaks += _text_hits(" ".join(argv), done.stdout, done.stderr)
    # the secret was really used: the key authorised every call, the pods got the value
    created = [w.request for w in targon.workloads.values()]
    assert created and all({"name": "HF_TOKEN", "value": CANARY} in r["envs"] for r in created)
    assert all({"name": "AUTH", "value": f"Bearer {CANARY}"} in r["envs"] for r in created)
    # a failing run (the provider refuses the key) must not echo it either
    wrong = {"CANARY_TARGON_KEY": CANARY + "-wrong", "TARGON_API_URL": targon.url}
    failed = cli(tmp_path, ["run", "m.yaml", "--progress", "plain", "--force", "render"], env=wrong, timeout=120)
    assert failed.code == 3, failed.stdout[-1500:]
    leaks += _text_hits("run with a refused key", failed.stdout, failed.stderr)
    leaks += [f"{CANARY}-wrong in output"] if (CANARY + "-wrong") in failed.stdout + failed.stderr else []
    leaks += _hits(tmp_path)
    assert leaks == []
    runs = json.loads(cli(tmp_path, ["status", "m.yaml", "--format", "json"], env=env).stdout)
    assert {s["id"] for s in runs["stages"]} == {"render", "render-local"}


def test_a_secret_given_as_a_command_line_option_is_not_echoed_or_stored(tmp_path, targon):
    _setup(tmp_path)
    env = {"CANARY_TARGON_KEY": "unused", "TARGON_API_URL": targon.url}
    done = cli(tmp_path, ["run", "m.yaml", "--progress", "plain", "--set", f"provider.api_key={CANARY}"],
               env=env, timeout=120)
    assert done.code == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert _text_hits("run --set provider.api_key", done.stdout, done.stderr) + _hits(tmp_path) == []


def test_the_resume_hint_asks_again_for_a_secret_given_on_the_command_line(tmp_path):
    """Interrupted, a run whose key came from --set prints the resume command with the key as ***
    and says to give it again; with the key given again, that command finishes the run."""
    sim = start_targon(api_key=CANARY, url_delay=0.05, health_delay=2.0, delete_delay=0.05)
    try:
        _setup(tmp_path)
        env = {"CANARY_TARGON_KEY": "unused", "TARGON_API_URL": sim.url}
        process = start(tmp_path, "--set", f"provider.api_key={CANARY}", env=env)
        wait_for(lambda: any(e["event"] in ("pod_health", "pod_waiting") for e in events(tmp_path)),
                 timeout=60, what="the pod warm-up")
        process.send_signal(signal.SIGINT)
        done = finish(process, timeout=60, what="the interrupted run")
        assert done.code == 130, done.stderr[-2000:]
        assert _text_hits("interrupted run", done.stdout, done.stderr) + _hits(tmp_path) == []
        hint = [line for line in done.stderr.splitlines() if "resume with: " in line][-1].split("resume with: ")[1]
        assert shlex.split(hint) == ["404-run", "run", "m.yaml", "--progress", "plain", "--set", "provider.api_key=***"]
        assert "*** stands for the value given to --set provider.api_key" in done.stderr

        again = [arg.replace("***", CANARY) for arg in shlex.split(hint)]
        resumed = cli(tmp_path, again[1:], env=env, timeout=120)
        assert resumed.code == 0, resumed.stdout[-1500:] + resumed.stderr[-1500:]
        assert _text_hits("resumed run", resumed.stdout, resumed.stderr) + _hits(tmp_path) == []
    finally:
        sim.stop()
