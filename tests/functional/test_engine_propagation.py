"""One run brings a whole pipeline up to date: work redone upstream is redone downstream too."""

from __future__ import annotations

import json
import shutil

from conftest import MANIFESTS
from engine_helpers import events


def _last_run(folder):
    all_events = events(folder)
    last = max(i for i, e in enumerate(all_events) if e["event"] == "run_started")
    return all_events[last:]


def test_a_redone_upstream_item_is_redone_downstream_in_the_same_run(tmp_path, cli):
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    manifest = "manifests/quickstart.yaml"
    assert cli(["run", manifest], cwd=tmp_path).exit_code == 0
    images = tmp_path / "manifests/quickstart/images"
    shutil.copyfile(images / "boat.png", images / "apple.png")  # a new prompt image for one stem

    plan = json.loads(cli(["plan", manifest, "--format", "json"], cwd=tmp_path).stdout)
    assert {s["id"]: s["action"] for s in plan["stages"]} == {
        "generate-good": "RUN", "generate-poor": "RUN", "render-good": "SKIP", "render-poor": "SKIP",
        "duel": "SKIP", "report": "SKIP"}  # what the files say before the run
    assert cli(["run", manifest], cwd=tmp_path).exit_code == 0

    run = _last_run(tmp_path / "manifests")
    redone = {(e["stage"], e["item"]) for e in run if e["event"] == "item_done"}
    assert redone == {("generate-good", "apple"), ("generate-poor", "apple"), ("render-good", "apple"),
                      ("render-poor", "apple"), ("duel", "apple"), ("report", "report")}
    started = {e["stage"]: e["reasons"] for e in run if e["event"] == "stage_started"}
    assert started["render-good"] == ["1/8 items out of date after generate-good ran"]
    assert started["duel"] == ["1/8 items out of date after render-poor, render-good ran"]
    plan = json.loads(cli(["plan", manifest, "--format", "json"], cwd=tmp_path).stdout)
    assert {s["action"] for s in plan["stages"]} == {"SKIP"}
