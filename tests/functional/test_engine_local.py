"""The engine end to end with local pods (the renderer stand-in as a child process)."""

from __future__ import annotations

import json
import os
import re
import random
import signal
import time

from engine_helpers import events, interrupt, ledger, local_manifest, start, tree, wait_for_event
from runner404.views import VIEW_SETS

WHITE = sorted(f"{v.name}.png" for v in VIEW_SETS["404-cli"]["white"])
GRAY = sorted(f"{v.name}.png" for v in VIEW_SETS["404-cli"]["gray"])


def _runs(folder):
    return [e for e in events(folder) if e["event"] == "run_started"]


def _since_last_run(folder):
    all_events = events(folder)
    last = max(i for i, e in enumerate(all_events) if e["event"] == "run_started")
    return all_events[last:]


def test_run_renders_every_stem_in_the_classic_layout(tmp_path, cli):
    local_manifest(tmp_path, modules=5)
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out/render"
    for stem in [f"m{i:03d}" for i in range(5)]:
        assert sorted(p.name for p in (out / stem / "white").iterdir()) == WHITE
        assert sorted(p.name for p in (out / stem / "gray").iterdir()) == GRAY
        assert (out / stem / "grid.png").read_bytes() == (out / f"{stem}.png").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers
    assert re.search(r"render +render +done +5 done", result.stdout)


def test_rerun_of_a_finished_manifest_runs_nothing_and_starts_no_pod(tmp_path, cli):
    local_manifest(tmp_path, modules=3)
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    before = tree(tmp_path / "out")
    again = cli(["m.yaml"], cwd=tmp_path)  # the shorthand
    assert again.exit_code == 0
    latest = _since_last_run(tmp_path)
    assert [e["event"] for e in latest] == ["run_started", "stage_skipped", "teardown", "run_finished"]
    assert tree(tmp_path / "out") == before
    plan = json.loads(cli(["plan", "m.yaml", "--format", "json"], cwd=tmp_path).stdout)
    assert plan["stages"][0]["action"] == "SKIP"
    assert plan["stages"][0]["reasons"] == ["up to date (3/3 items done)"]


def test_a_deleted_output_is_recreated_alone(tmp_path, cli):
    local_manifest(tmp_path, modules=4)
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    before = tree(tmp_path / "out")
    (tmp_path / "out/render/m002/white/back.png").unlink()
    plan = cli(["plan", "m.yaml"], cwd=tmp_path).stdout
    assert "RUN  render  render  4 items  pod renderer  1/4 items missing" in plan
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    done = [e["item"] for e in _since_last_run(tmp_path) if e["event"] == "item_done"]
    assert done == ["m002"]
    assert tree(tmp_path / "out") == before


def test_a_changed_parameter_is_explained_and_redone(tmp_path, cli):
    local_manifest(tmp_path, modules=2)
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    plan = cli(["plan", "m.yaml", "--set", "stages.render.img_size=48"], cwd=tmp_path).stdout
    assert "parameter img_size changed 32→48" in plan
    assert cli(["run", "m.yaml", "--set", "stages.render.img_size=48"], cwd=tmp_path).exit_code == 0
    assert len([e for e in _since_last_run(tmp_path) if e["event"] == "item_done"]) == 2
    # back to the first value: those renders are gone (overwritten), so the stems are missing again
    plan = cli(["plan", "m.yaml"], cwd=tmp_path).stdout
    assert "RUN" in plan


def test_force_redoes_a_stage(tmp_path, cli):
    local_manifest(tmp_path, modules=2)
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    assert "forced" in cli(["plan", "m.yaml", "--force", "render"], cwd=tmp_path).stdout
    assert cli(["run", "m.yaml", "--force", "render"], cwd=tmp_path).exit_code == 0
    assert len([e for e in _since_last_run(tmp_path) if e["event"] == "item_done"]) == 2
    bad = cli(["run", "m.yaml", "--force", "rendr"], cwd=tmp_path)
    assert bad.exit_code == 2 and "no such stage (did you mean 'render'?)" in bad.stderr


def test_failed_items_end_with_exit_4_and_are_listed(tmp_path, cli):
    local_manifest(tmp_path, modules=3)
    (tmp_path / "js/m001.js").write_text(
        "export default function generate(THREE) { const r = Math.random(); "
        "return new THREE.Mesh(new THREE.BoxGeometry(r, r, r)); }\n")
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 4
    assert "render/m001: renderer rejected m001.js (validation_failed): FORBIDDEN_IDENTIFIER" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out/render").glob("*.png")) == ["m000.png", "m002.png"]
    status = cli(["status", "m.yaml"], cwd=tmp_path)
    assert "2/3 done, 1 failed" in status.stdout and "render/m001: renderer rejected" in status.stdout
    row = ledger(tmp_path).db.execute("SELECT detail FROM items WHERE item='m001'").fetchone()
    assert json.loads(row["detail"])["failures"][0]["rule"] == "FORBIDDEN_IDENTIFIER"
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 4  # a rerun retries the failed item only
    assert [e["item"] for e in _since_last_run(tmp_path) if e["event"].startswith("item_")] == ["m001"]


def test_a_pod_that_cannot_start_is_an_infrastructure_failure(tmp_path, cli):
    path = local_manifest(tmp_path, modules=1)
    path.write_text(path.read_text().replace("runner404.sim renderer", "runner404.sim no-such-service"))
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 3
    assert "exited with code 2" in result.stdout
    log = next((tmp_path / ".runner404/runs").glob("*/pods/engine-test-renderer.log"))
    assert f"see {log}" in result.stdout
    assert "invalid choice: 'no-such-service'" in log.read_text()


def test_a_failed_stage_ends_with_exit_1_and_blocks_what_needs_it(tmp_path, cli):
    path = local_manifest(tmp_path, modules=1)
    path.write_text(path.read_text() + "  summary:\n    uses: report\n    input: out/render\n"
                    "  again:\n    uses: report\n    input: out/render\n    output: out/again\n"
                    "    needs: [summary]\n")
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 1
    assert re.search(r"summary +report +failed .*no duels.json in .*out/render: run the judge stage first", result.stdout)
    assert re.search(r"again +report +blocked", result.stdout)
    assert re.search(r"render +render +done", result.stdout)  # the stages that could run did


def test_transient_faults_are_retried_until_every_item_is_done(tmp_path, cli):
    local_manifest(tmp_path, modules=8, retries=10, timeout="1s",
                   renderer_flags="--fail-rate 0.1 --drop-rate 0.05 --stall-rate 0.05 --stall 3 --seed 7")
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 0, result.stdout + result.stderr
    attempts = ledger(tmp_path).attempts("render")
    failures = [a["error"] for a in attempts if not a["ok"]]
    assert any("HTTP 503" in f for f in failures)
    assert any("timeout" in f for f in failures) and any("connection error" in f for f in failures)
    assert sum(a["ok"] for a in attempts) == 8


def test_ctrl_c_stops_cleanly_and_the_printed_command_resumes(tmp_path):
    local_manifest(tmp_path, modules=10, concurrency=1, renderer_flags="--view-latency 0.02")
    process = start(tmp_path)
    wait_for_event(tmp_path, "item_done", 2)
    code, out, err = interrupt(process)
    assert code == 130, err
    assert "resume with: 404-run run m.yaml --progress plain" in err
    pids = [int(r.uid.removeprefix("local-")) for r in ledger(tmp_path).pods()]
    assert pids and not any(_alive(pid) for pid in pids)
    assert ledger(tmp_path).runs()[-1]["status"] == "interrupted"
    resumed = start(tmp_path)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    ok = ledger(tmp_path).db.execute(
        "SELECT item, count(*) AS n FROM attempts WHERE ok=1 GROUP BY item").fetchall()
    assert len(ok) == 10 and all(row["n"] == 1 for row in ok)


def test_sigkill_at_random_moments_then_resume_gives_identical_outputs(tmp_path):
    reference = tmp_path / "reference"
    local_manifest(reference, modules=12, concurrency=2, renderer_flags="--view-latency 0.01")
    done = start(reference)
    assert done.wait(timeout=120) == 0
    victim = tmp_path / "victim"
    local_manifest(victim, modules=12, concurrency=2, renderer_flags="--view-latency 0.01")
    rng = random.Random(404)
    for _ in range(5):  # each kill lands at a random moment after a random number of items
        done = sum(e["event"] == "item_done" for e in events(victim))
        process = start(victim)
        wait_for_event(victim, "item_done", min(11, done + rng.randint(1, 2)))
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    done_before_final = sum(e["event"] == "item_done" for e in events(victim))
    assert 0 < done_before_final < 12  # the kills landed in the middle of the work
    final = start(victim)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert tree(victim / "out") == tree(reference / "out")
    ok = ledger(victim).db.execute("SELECT item, count(*) AS n FROM attempts WHERE ok=1 GROUP BY item").fetchall()
    assert len(ok) == 12 and all(row["n"] == 1 for row in ok)
    done_rows = ledger(victim).db.execute("SELECT count(*) FROM items WHERE status='done'").fetchone()[0]
    assert done_rows == 12
    time.sleep(0.2)
    pids = [int(r.uid.removeprefix("local-")) for r in ledger(victim).pods()]
    assert not any(_alive(pid) for pid in pids)  # local pods die with a killed runner


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_progress_json_streams_every_event_as_ndjson(tmp_path, cli):
    local_manifest(tmp_path, modules=2)
    result = cli(["run", "m.yaml", "--progress", "json"], cwd=tmp_path)
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    names = [r["event"] for r in records]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("item_done") == 2 and "pod_ready" in names and "pod_stopped" in names
    assert records == events(tmp_path)  # the same stream as the run log


def test_status_before_and_after_a_run(tmp_path, cli):
    local_manifest(tmp_path, modules=2)
    before = cli(["status", "m.yaml"], cwd=tmp_path)
    assert before.exit_code == 0 and "never ran" in before.stdout
    assert not (tmp_path / ".runner404").exists()  # status and plan change nothing
    cli(["run", "m.yaml"], cwd=tmp_path)
    after = json.loads(cli(["status", "m.yaml", "--format", "json"], cwd=tmp_path).stdout)
    (stage,) = after["stages"]
    assert (stage["status"], stage["items_total"], stage["items_done"], stage["failed"]) == ("done", 2, 2, {})
