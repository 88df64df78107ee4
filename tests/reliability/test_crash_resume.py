"""Crash safety: SIGKILL at seeded random moments across generate, render and judge, then resume.

The manifest is the quick start's shape on local pods (two generators, two renders, a judge and
a report), scaled to enough stems that every stage is killed several times. Kills 1-8 aim at
generate, 9-16 at render, 17-24 at the judge (or at the next group when that one is finished):
each waits until this run has started the group, then for a seeded random number (0-3) of items
of the group to be done by this run, then a seeded random delay (0-250 ms), then SIGKILLs the
runner (its local pods die with it). So moments fall in pod warm-up, between items, inside
batches and inside writes. After the final, uninterrupted
resume the outputs must be byte-identical to those of a run that was never killed, and the
ledger must show every item completed exactly once: one ok attempt per item per stage.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from reliability_helpers import (alive, events, finish, gone, local_pod_pids, prompt_images, query, run, run_events,
                                 start, tree, wait_for)

STEMS = 32
KILLS = 24  # at least 20 moments, spread over the three groups
PER_GROUP = 8
SEED = 404
GROUPS = {  # kill target -> the stages of that group
    "generate": ("generate-good", "generate-poor"),
    "render": ("render-good", "render-poor"),
    "judge": ("duel",),
}

MANIFEST = """\
version: 1
name: crash
provider: local
pods:
  gen-good: {preset: generator, command: python -m runner404.sim generator --quality good --prompt-latency 0.04 --gpu-capacity 2}
  gen-poor: {preset: generator, command: python -m runner404.sim generator --quality poor --prompt-latency 0.04 --gpu-capacity 2}
  renderer: {preset: renderer, command: python -m runner404.sim renderer --latency 0.02 --capacity 2}
  judge: {preset: judge, command: python -m runner404.sim vlm --latency 0.03 --capacity 8}
prompts:
  demo: {file: prompts.json}
stages:
  generate-good: {uses: generate, pod: gen-good, prompts: demo, seed: 42, batch_size: 2, poll_interval: 0.05s}
  generate-poor: {uses: generate, pod: gen-poor, prompts: demo, seed: 42, batch_size: 2, poll_interval: 0.05s}
  render-good: {uses: render, pod: renderer, input: "${{ stages.generate-good.outputs.dir }}", img_size: 32, views: validator}
  render-poor: {uses: render, pod: renderer, input: "${{ stages.generate-poor.outputs.dir }}", img_size: 32, views: validator}
  duel:
    uses: judge
    pod: judge
    prompts: demo
    seed: 42
    rules: validator
    concurrency: 4
    left: "${{ stages.render-poor.outputs.dir }}"
    right: "${{ stages.render-good.outputs.dir }}"
  report: {uses: report, input: "${{ stages.duel.outputs.dir }}", title: crash test}
"""
ITEM_STAGES = ("generate-good", "generate-poor", "render-good", "render-poor", "duel")


def _setup(folder):
    folder.mkdir()
    stems = prompt_images(folder, STEMS)
    (folder / "m.yaml").write_text(MANIFEST)
    return stems


def _done_stages(folder) -> set[str]:
    if not (folder / ".runner404/state.sqlite").exists():
        return set()
    rows = query(folder, "SELECT stage, count(*) AS n FROM items WHERE status='done' GROUP BY stage")
    return {r["stage"] for r in rows if r["n"] >= (1 if r["stage"] == "report" else STEMS)}


def _progress(folder, stages, run_count: int) -> int | None:
    """In run number `run_count` (1-based, by run_started events): None until it has started one
    of `stages`, then the number of items of `stages` it has done."""
    seen, started, done = 0, False, 0
    for record in events(folder):
        if record["event"] == "run_started":
            seen += 1
        elif seen == run_count and record.get("stage") in stages:
            started = started or record["event"] in ("stage_started", "item_done")
            done += record["event"] == "item_done"
    return done if started else None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash") / "reference"
    _setup(folder)
    done = run(folder, timeout=180)
    assert done.code == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path, reference):
    victim = tmp_path / "victim"
    stems = _setup(victim)
    rng = random.Random(SEED)
    kills: list[tuple[str, float]] = []
    runs = 0
    for _ in range(KILLS + 16):  # bounded: at most this many attempts
        if len(kills) >= KILLS:
            break
        done = _done_stages(victim)
        pending = [g for g, stages in GROUPS.items() if not set(stages) <= done]
        if not pending:
            break
        wanted = list(GROUPS)[min(len(kills) // PER_GROUP, len(GROUPS) - 1)]
        group = wanted if wanted in pending else pending[0]
        items, delay = rng.randint(0, 3), rng.uniform(0.0, 0.25)
        process = start(victim)
        runs += 1
        try:
            wait_for(lambda: (_progress(victim, GROUPS[group], runs) or -1) >= items or process.poll() is not None
                     or (items == 0 and _progress(victim, GROUPS[group], runs) == 0),
                     timeout=60, what=f"run {runs} to do {items} items of {group}")
            time.sleep(delay)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills.append((group, delay))
            process.wait(timeout=30)
            process.stdout.close()
            process.stderr.close()
        # Its local pods get SIGTERM from the kernel (PR_SET_PDEATHSIG) and exit; wait until init
        # has reaped them, so every run starts from the same kind of state (zombies have their
        # own test: test_resume_does_not_wait_for_a_dead_pod).
        wait_for(lambda: all(gone(pid) for pid in local_pod_pids(victim)), timeout=15,
                 what="the killed run's pods to be reaped")
    by_group = {g: sum(1 for k, _ in kills if k == g) for g in GROUPS}
    assert len(kills) >= 20, f"only {len(kills)} kills landed: {by_group}"
    assert all(by_group.values()), f"every stage group must be killed at least once: {by_group}"

    final = finish(start(victim), timeout=240, what="the resumed run")
    assert final.code == 0, final.stdout[-3000:] + final.stderr[-3000:]

    # byte-identical to the run that was never interrupted (hidden leftovers included)
    got, want = tree(victim / "out"), tree(reference / "out")
    assert sorted(got) == sorted(want), set(got) ^ set(want)
    assert [k for k in want if got[k] != want[k]] == []

    # every item completed exactly once: one ok attempt per item per stage
    for stage in ITEM_STAGES:
        rows = query(victim, "SELECT item, sum(ok) AS ok FROM attempts WHERE stage=? GROUP BY item", stage)
        ok = {r["item"]: r["ok"] for r in rows}
        assert {s for s in stems if ok.get(s) != 1} == set(), (stage, {s: ok.get(s) for s in stems if ok.get(s) != 1})
        assert set(ok) <= set(stems)
        done_items = query(victim, "SELECT count(*) AS n FROM items WHERE stage=? AND status='done'", stage)
        assert done_items[0]["n"] == STEMS
    report_ok = query(victim, "SELECT count(*) AS n FROM attempts WHERE stage='report' AND ok=1")
    assert report_ok[0]["n"] == 1

    # the local pods of killed runs died with them
    time.sleep(0.3)
    assert [pid for pid in local_pod_pids(victim) if alive(pid)] == []
    # and the last run did everything that was left, in one go
    names = [e["event"] for e in run_events(victim)]
    assert names[-1] == "run_finished"


def test_match_files_missing_after_the_last_duel_are_rewritten(tmp_path):
    """duels.json and match.json are written after the last duel is recorded done; a SIGKILL in
    between must not leave them missing (or stale) behind a judge stage planned 'up to date'."""
    folder = tmp_path / "small"
    folder.mkdir()
    prompt_images(folder, 4)
    (folder / "m.yaml").write_text(MANIFEST.replace("  report: {uses: report", "  # report: {uses: report"))
    first = run(folder, timeout=120)
    assert first.code == 0, first.stdout[-2000:]
    want = tree(folder / "out/duel")
    # the state a SIGKILL leaves between the last duel's ledger commit and write_match():
    # every duel recorded done, duels.json and match.json not written yet
    (folder / "out/duel/duels.json").unlink()
    (folder / "out/duel/match.json").unlink()
    done = run(folder, timeout=120)
    assert done.code == 0, done.stdout[-2000:]
    assert tree(folder / "out/duel") == want


RENDER_ONLY = """\
version: 1
name: zombie
provider: local
pods:
  renderer: {preset: renderer, command: python -m runner404.sim renderer --latency 0.2 --capacity 1}
stages:
  render: {uses: render, pod: renderer, input: js/, img_size: 32}
"""


def test_resume_does_not_wait_for_a_dead_pod(tmp_path):
    """A killed run's pod may still be a zombie (dead, not yet reaped by init) when the next run
    starts; it must not be taken for a live pod to reuse (which waited 2 x health interval + 1 s,
    about 13 s of polls with the presets, before starting a new pod)."""
    import subprocess

    from reliability_helpers import write_modules

    folder = tmp_path / "zombie"
    write_modules(folder / "js", 4)
    (folder / "m.yaml").write_text(RENDER_ONLY)
    process = start(folder)
    wait_for(lambda: any(e["event"] == "item_done" for e in events(folder)), timeout=60, what="a first item")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()
    (pod_pid,) = local_pod_pids(folder)
    wait_for(lambda: gone(pod_pid), timeout=15, what="the pod to be reaped")
    # The state the kill leaves when nobody has reaped the pod yet: its pid is a zombie. Make
    # one that stays a zombie for the whole test (a child of this process, never waited for).
    zombie = subprocess.Popen(["true"])
    wait_for(lambda: not alive(zombie.pid) and not gone(zombie.pid), timeout=10, what="a zombie")
    import sqlite3

    db = sqlite3.connect(folder / ".runner404/state.sqlite")
    with db:
        db.execute("UPDATE pods SET uid=? WHERE uid=?", (f"local-{zombie.pid}", f"local-{pod_pid}"))
    db.close()
    try:
        resumed = finish(start(folder), timeout=90, what="the resume")
        assert resumed.code == 0, resumed.stderr[-2000:]
        latest = run_events(folder)
        begun = next(e["t"] for e in latest if e["event"] == "pod_starting")
        created = next(e["t"] for e in latest if e["event"] == "pod_created")
        assert created - begun < 3.0, f"the resume waited {created - begun:.1f}s on a dead pod"
    finally:
        zombie.wait(timeout=10)
