"""A project moved elsewhere (manifest, outputs and .runner404 state together) stays up to date."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from conftest import MANIFESTS
from engine_helpers import events, ledger, local_manifest, tree


def _since_last_run(folder):
    all_events = events(folder)
    last = max(i for i, e in enumerate(all_events) if e["event"] == "run_started")
    return all_events[last:]


def _plan(cli, folder, manifest="m.yaml"):
    result = cli(["plan", manifest, "--format", "json"], cwd=folder)
    assert result.exit_code == 0, result.stderr
    return {s["id"]: (s["action"], s["reasons"]) for s in json.loads(result.stdout)["stages"]}


def test_a_moved_project_skips_everything_and_redoes_only_a_changed_input(tmp_path, cli):
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    local_manifest(first, modules=4)
    assert cli(["run", "m.yaml"], cwd=first).exit_code == 0
    moved.parent.mkdir()
    os.rename(first, moved)  # the whole folder: times are kept, every absolute path changes
    before = tree(moved / "out")

    assert _plan(cli, moved) == {"render": ("SKIP", ["up to date (4/4 items done)"])}
    assert cli(["run", "m.yaml"], cwd=moved).exit_code == 0
    assert [e["event"] for e in _since_last_run(moved)] == ["run_started", "stage_skipped", "teardown",
                                                            "run_finished"]  # no pod started
    assert tree(moved / "out") == before

    module = moved / "js/m001.js"
    module.write_text(module.read_text().replace("0.1, 0.2, 0.2", "0.3, 0.2, 0.2"))
    assert _plan(cli, moved) == {"render": ("RUN", ["1/4 items missing"])}
    assert cli(["run", "m.yaml"], cwd=moved).exit_code == 0
    assert [e["item"] for e in _since_last_run(moved) if e["event"] == "item_done"] == ["m001"]


def test_a_moved_pipeline_skips_every_stage(tmp_path, cli):
    """Generate, render, judge and report: every kind's recorded inputs and outputs."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(MANIFESTS, first / "manifests")
    assert cli(["run", "manifests/quickstart.yaml"], cwd=first).exit_code == 0
    os.rename(first, moved)
    plan = _plan(cli, moved, "manifests/quickstart.yaml")
    assert {action for action, _ in plan.values()} == {"SKIP"}, plan
    assert cli(["run", "manifests/quickstart.yaml"], cwd=moved).exit_code == 0
    assert "pod_starting" not in [e["event"] for e in _since_last_run(moved / "manifests")]


def _legacy_token(*paths):
    """How ledgers of runner404 0.1.0 recorded an item's inputs: absolute paths, sizes, times."""
    state = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:32]


def test_a_ledger_with_absolute_input_tokens_is_kept_and_migrated(tmp_path, cli):
    first, moved = tmp_path / "first", tmp_path / "moved"
    local_manifest(first, modules=3)
    assert cli(["run", "m.yaml"], cwd=first).exit_code == 0
    state = ledger(first)
    for (item,) in state.db.execute("SELECT item FROM items").fetchall():
        state.db.execute("UPDATE items SET inputs=? WHERE item=?",
                         (_legacy_token(first.resolve() / "js" / f"{item}.js"), item))
    state.close()

    assert _plan(cli, first) == {"render": ("SKIP", ["up to date (3/3 items done)"])}  # plan writes nothing
    assert cli(["run", "m.yaml"], cwd=first).exit_code == 0
    assert not [e for e in _since_last_run(first) if e["event"] == "item_done"]
    os.rename(first, moved)  # only tokens rewritten by that run survive a move
    assert _plan(cli, moved) == {"render": ("SKIP", ["up to date (3/3 items done)"])}
