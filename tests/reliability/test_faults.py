"""Faults of every stand-in: 5xx bursts, timeouts (stalls), dropped connections, slow bodies,
and each service's own bad answers (corrupt ZIPs, wrong image counts, malformed JSON).

Each scenario runs twice against the same faulty service, every run bounded by a subprocess
timeout (a run that outlives it is a hang and fails the test). Each run must exit 0 (done) or 4
(some items failed), print no traceback, give every failed item a clear reason in the ledger and
in the summary, and the second run must keep every item the first finished: same bytes, no new
successful attempt.

The stand-ins' own knobs inject random 5xx, stalls and drops and the bad answers; a loopback
proxy (reliability_helpers.FaultProxy) in front of a stand-in adds what they lack: 5xx in
consecutive bursts, and bodies that trickle out.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from reliability_helpers import (FaultProxy, Service, assert_clean_output, digests, prompt_images, query, run,
                                 run_events, write_modules)

TIMEOUT = 90  # seconds a single run may take before it counts as a hang


@dataclass
class Scenario:
    stage: str  # generate | render | duel
    flags: str = ""  # stand-in flags (a local pod), or
    proxy: dict | None = None  # FaultProxy options (an endpoint pod behind the proxy)
    reasons: tuple[str, ...] = ()  # failure reasons must contain one of these (when items fail)
    must_fail: bool = False  # the fault always fails items (bad answers on every request)


GEN_FAULTS = {
    "5xx-random": Scenario("generate", "--fail-rate 0.3 --seed 5", reasons=("HTTP 503", "generator unreachable")),
    "5xx-burst": Scenario("generate", proxy={"paths": ("/status", "/generate", "/results"), "burst": [(2, 40)]},
                          reasons=("generator unreachable", "HTTP 503")),
    "stall": Scenario("generate", "--stall-rate 0.2 --stall 1.5 --seed 5", reasons=("timeout", "timed out")),
    "drop": Scenario("generate", "--drop-rate 0.3 --seed 5", reasons=("connection error", "generator unreachable")),
    "slow-body": Scenario("generate", proxy={"paths": ("/results",), "slow_body": True, "chunk": 256, "pause": 0.01},
                          reasons=("timeout",)),
    "corrupt-zip": Scenario("generate", "--zip-mode corrupt", reasons=("invalid ZIP archive",), must_fail=True),
}
RENDER_FAULTS = {
    "5xx-random": Scenario("render", "--fail-rate 0.3 --seed 5", reasons=("HTTP 503",)),
    "5xx-burst": Scenario("render", proxy={"paths": ("/render",), "burst": [(1, 12), (20, 24)]}, reasons=("HTTP 503",)),
    "stall": Scenario("render", "--stall-rate 0.2 --stall 3 --seed 5", reasons=("timeout",)),
    "drop": Scenario("render", "--drop-rate 0.3 --seed 5", reasons=("connection error",)),
    "slow-body": Scenario("render", proxy={"paths": ("/render",), "slow_body": True, "chunk": 1024, "pause": 0.005},
                          reasons=("timeout",)),
    "wrong-count": Scenario("render", "--wrong-count-rate 1.0 --seed 5", reasons=("images, expected",),
                            must_fail=True),
}
VLM_FAULTS = {
    "5xx-random": Scenario("duel", "--fail-rate 0.3 --seed 5", reasons=("duel failed",)),
    "5xx-burst": Scenario("duel", proxy={"paths": ("/v1/chat/completions",), "burst": [(1, 30)]},
                          reasons=("duel failed",)),
    "stall": Scenario("duel", "--stall-rate 0.1 --stall 3 --seed 5", reasons=("duel failed",)),
    "drop": Scenario("duel", "--drop-rate 0.3 --seed 5", reasons=("duel failed",)),
    "slow-body": Scenario("duel", proxy={"paths": ("/v1/chat/completions",), "slow_body": True, "chunk": 64,
                                         "pause": 0.005}, reasons=("duel failed",)),
    "malformed-json": Scenario("duel", "--malformed-rate 0.5 --seed 5", reasons=("duel failed",)),
    "malformed-json-always": Scenario("duel", "--malformed-rate 1.0 --seed 5", reasons=("duel failed",)),
}

GENERATE = """\
version: 1
name: faults
provider: local
pods:
  generator: {pod}
prompts:
  set: {{file: prompts.json}}
stages:
  generate: {{uses: generate, pod: generator, prompts: set, seed: 7, batch_size: 2, poll_interval: 0.05s}}
"""
RENDER = """\
version: 1
name: faults
provider: local
pods:
  renderer: {pod}
stages:
  render: {{uses: render, pod: renderer, input: js/, img_size: 32, timeout: 1s, retries: 3, concurrency: 2}}
"""
JUDGE = """\
version: 1
name: faults
provider: local
pods:
  judge: {pod}
prompts:
  set: {{file: prompts.json}}
stages:
  duel:
    uses: judge
    pod: judge
    prompts: set
    seed: 42
    rules: {{preset: 404-cli, vlm: {{timeout: 1s}}}}
    left: out/render-poor
    right: out/render-good
    concurrency: 4
"""
SERVICE = {"generate": ("generator", GENERATE, "generator"), "render": ("renderer", RENDER, "renderer"),
           "duel": ("vlm", JUDGE, "judge")}
RENDERS = """\
version: 1
name: renders
provider: local
pods:
  gen-good: {preset: generator, command: python -m runner404.sim generator --quality good}
  gen-poor: {preset: generator, command: python -m runner404.sim generator --quality poor}
  renderer: {preset: renderer, command: python -m runner404.sim renderer}
prompts:
  set: {file: prompts.json}
stages:
  good: {uses: generate, pod: gen-good, prompts: set, seed: 42, poll_interval: 0.05s}
  poor: {uses: generate, pod: gen-poor, prompts: set, seed: 42, poll_interval: 0.05s}
  render-good: {uses: render, pod: renderer, input: out/good, img_size: 32, concurrency: 4}
  render-poor: {uses: render, pod: renderer, input: out/poor, img_size: 32, concurrency: 4}
"""


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> Path:
    """Both sides of the duels, rendered once for every judge scenario."""
    folder = tmp_path_factory.mktemp("renders")
    prompt_images(folder, 4)
    (folder / "m.yaml").write_text(RENDERS)
    done = run(folder, timeout=120)
    assert done.code == 0, done.stdout[-2000:]
    return folder


def _pod(scenario: Scenario, service: str, url: str | None) -> str:
    if url:
        return f'{{preset: {SERVICE[scenario.stage][2]}, url: "{url}", health: {{interval: 0.05s}}}}'
    return f"{{preset: {SERVICE[scenario.stage][2]}, command: python -m runner404.sim {service} {scenario.flags}}}"


def _setup(folder: Path, scenario: Scenario, renders: Path | None, url: str | None) -> list[str]:
    service, template, _ = SERVICE[scenario.stage]
    if scenario.stage == "generate":
        items = prompt_images(folder, 6)
    elif scenario.stage == "render":
        items = write_modules(folder / "js", 6)
    else:
        shutil.copy(renders / "prompts.json", folder / "prompts.json")
        shutil.copytree(renders / "images", folder / "images")
        for side in ("render-good", "render-poor"):
            shutil.copytree(renders / "out" / side, folder / "out" / side)
        items = [f"p{i:03d}" for i in range(4)]
    (folder / "m.yaml").write_text(template.format(pod=_pod(scenario, service, url)))
    return items


def _state(folder: Path, stage: str) -> tuple[dict[str, int], dict[str, str]]:
    ok = {r["item"]: r["n"] for r in query(folder, "SELECT item, sum(ok) AS n FROM attempts WHERE stage=? "
                                                   "GROUP BY item", stage)}
    failed = {r["item"]: r["reason"] for r in query(folder, "SELECT item, reason FROM items WHERE stage=? "
                                                            "AND status='failed'", stage)}
    return ok, failed


def _outputs(folder: Path, stage: str, item: str) -> dict[str, str]:
    out = folder / "out" / stage
    return {k: v for k, v in digests(out).items() if k.split("/", 1)[0].split(".", 1)[0] == item}


def _check_run(done, folder: Path, scenario: Scenario, items: list[str]) -> tuple[dict, dict]:
    assert done.code in (0, 4), f"exit {done.code}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert_clean_output(done)
    ok, failed = _state(folder, scenario.stage)
    if done.code == 4:
        assert failed, "exit 4 without a failed item in the ledger"
    for item, reason in failed.items():
        assert reason and len(reason) < 2000, (item, reason)
        assert any(r in reason for r in scenario.reasons), f"{item}: unclear reason {reason!r}"
        assert f"{scenario.stage}/{item}: " in done.stdout, f"{item} is not listed in the summary"
    if scenario.must_fail:
        assert set(failed) == set(items), failed
    assert set(failed) | {i for i, n in ok.items() if n} >= set(items), "an item neither done nor failed"
    return ok, failed


def _scenario(tmp_path: Path, scenario: Scenario, renders: Path | None) -> None:
    service_name = SERVICE[scenario.stage][0]
    backing = proxy = None
    try:
        if scenario.proxy is not None:
            backing = Service(service_name, "--seed", "5")
            proxy = FaultProxy(backing.url, **scenario.proxy)
        items = _setup(tmp_path, scenario, renders, proxy.url if proxy else None)
        first = run(tmp_path, timeout=TIMEOUT)
        ok1, failed1 = _check_run(first, tmp_path, scenario, items)
        finished = {i for i, n in ok1.items() if n}
        kept = {item: _outputs(tmp_path, scenario.stage, item) for item in finished}
        second = run(tmp_path, timeout=TIMEOUT)
        ok2, failed2 = _check_run(second, tmp_path, scenario, items)
        for item in finished:  # never loses finished work: not redone, same bytes
            assert ok2.get(item) == 1, f"{item} was redone ({ok2.get(item)} ok attempts)"
            assert item not in failed2
            assert _outputs(tmp_path, scenario.stage, item) == kept[item], f"{item} changed"
        if proxy is not None and "burst" in scenario.proxy:
            assert proxy.injected > 0
    finally:
        if proxy is not None:
            proxy.stop()
        if backing is not None:
            backing.stop()


@pytest.mark.parametrize("fault", list(GEN_FAULTS))
def test_generator_faults(tmp_path, fault):
    _scenario(tmp_path, GEN_FAULTS[fault], None)


@pytest.mark.parametrize("fault", list(RENDER_FAULTS))
def test_renderer_faults(tmp_path, fault):
    _scenario(tmp_path, RENDER_FAULTS[fault], None)


@pytest.mark.parametrize("fault", list(VLM_FAULTS))
def test_vlm_faults(tmp_path, renders, fault):
    _scenario(tmp_path, VLM_FAULTS[fault], renders)


# A body that trickles a few bytes every half second: each socket read gets data well within a
# 1 s read timeout, so only a limit on the whole request cuts it. Unbounded, one render response
# (several KB) or one chat completion (a few hundred bytes) takes minutes, past the run's guard.
TRICKLE = {"slow_body": True, "chunk": 2, "pause": 0.5}
GUARD = 120  # seconds; a run that outlives it hung


def test_render_timeout_bounds_a_whole_request_even_when_the_body_trickles(tmp_path):
    with Service("renderer") as backing, FaultProxy(backing.url, paths=("/render",), **TRICKLE) as proxy:
        stems = write_modules(tmp_path / "js", 2)
        (tmp_path / "m.yaml").write_text(RENDER.format(
            pod=f'{{preset: renderer, url: "{proxy.url}", health: {{interval: 0.05s}}}}'))
        done = run(tmp_path, timeout=GUARD)
        assert_clean_output(done)
        assert done.code == 4, done.stdout[-3000:]
        # every attempt of every stem (retries: 3) was cut by the 1 s limit and retried as a timeout
        attempts = query(tmp_path, "SELECT item, attempt, ok, error FROM attempts WHERE stage='render' "
                                   "ORDER BY item, attempt")
        assert {(r["item"], r["attempt"]) for r in attempts} == {(s, a) for s in stems for a in (1, 2, 3)}
        assert all(not r["ok"] and "timeout" in r["error"] for r in attempts), [dict(r) for r in attempts]
        _, failed = _state(tmp_path, "render")
        assert set(failed) == set(stems) and all("timeout" in reason for reason in failed.values()), failed


def test_vlm_timeout_bounds_a_whole_request_even_when_the_body_trickles(tmp_path, renders):
    with Service("vlm") as backing, FaultProxy(backing.url, paths=("/v1/chat/completions",), **TRICKLE) as proxy:
        stems = _setup(tmp_path, VLM_FAULTS["slow-body"], renders, proxy.url)
        # one attempt per call, so each call ends at its first timeout (with its neutral fallback)
        (tmp_path / "m.yaml").write_text((tmp_path / "m.yaml").read_text().replace(
            "vlm: {timeout: 1s}", "vlm: {timeout: 1s, max_retries: 1}"))
        done = run(tmp_path, timeout=GUARD)
        assert_clean_output(done)
        assert done.code in (0, 4), done.stdout[-3000:]
        duels = json.loads((tmp_path / "out" / "duel" / "duels.json").read_text())["results"]
        assert [d["stem"] for d in duels] == stems
        # every attempt ended at the 1 s limit of the whole request, those that reached the VLM
        # included (others timed out queued at the proxy: it accepts a few connections at a time)
        failures = [e["line"] for e in run_events(tmp_path)
                    if e["event"] == "vlm_warning" and ": attempt 1/1 failed: " in e["line"]]
        assert proxy.count and len(failures) >= proxy.count, (len(failures), proxy.count)
        assert all("within the 1s timeout" in line for line in failures), failures[:5]
