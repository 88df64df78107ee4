"""The stage graph, fingerprints and the planner's RUN/SKIP decisions (with a fake ledger)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import MANIFESTS

from runner404 import __version__
from runner404.manifest import load_manifest
from runner404.manifest.model import parse_duration
from runner404.plan import graph
from runner404.plan.fingerprint import canonical, stage_fingerprint, stage_inputs
from runner404.plan.planner import RUN, SKIP, StageRecord, dependency_map, make_plan

QUICKSTART = MANIFESTS / "quickstart.yaml"
STEMS = ["apple", "boat", "cactus", "duck", "lamp", "mug", "tree", "vase"]


# -- graph ---------------------------------------------------------------------------------------


def test_find_cycle_spells_the_cycle_out():
    deps = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    assert graph.find_cycle(["a", "b", "c", "d"], deps) == ["a", "b", "c", "a"]


def test_find_cycle_starts_where_the_cycle_is_entered():
    deps = {"entry": ["x"], "x": ["y"], "y": ["x"]}
    assert graph.find_cycle(["entry", "x", "y"], deps) == ["x", "y", "x"]


def test_find_cycle_of_a_dag_is_none():
    deps = {"report": ["duel"], "duel": ["left", "right"], "left": ["gen"], "right": ["gen"]}
    assert graph.find_cycle(["gen", "left", "right", "duel", "report"], deps) is None


def test_find_cycle_self_loop():
    assert graph.find_cycle(["a", "b"], {"b": ["b"]}) == ["b", "b"]


def test_find_cycle_ignores_unknown_dependencies():
    assert graph.find_cycle(["a"], {"a": ["ghost"]}) is None


def test_steps_group_by_depth():
    deps = {"render": ["gen"], "duel": ["render", "other"], "other": []}
    assert graph.steps(["gen", "render", "other", "duel"], deps) == [["gen", "other"], ["render"], ["duel"]]


def test_steps_keep_manifest_order_inside_a_step():
    assert graph.steps(["z", "a", "m"], {}) == [["z", "a", "m"]]
    assert graph.steps(["y", "b", "x", "a"], {"y": ["x"], "b": ["a"]}) == [["x", "a"], ["y", "b"]]


NODES = ["gen", "render-good", "duel"]
LABELS = {"gen": "generate", "render-good": "render", "duel": "judge"}
DEPS = {"render-good": ["gen"], "duel": ["render-good", "gen"]}


def test_mermaid_uses_safe_ids_and_draws_every_edge():
    text = graph.to_mermaid(NODES, LABELS, DEPS)
    assert text.splitlines()[0] == "flowchart LR"
    assert 's1["render-good<br/>render"]' in text
    for edge in ("s0 --> s1", "s1 --> s2", "s0 --> s2"):
        assert f"  {edge}" in text.splitlines()
    assert text.count("-->") == 3


def test_dot_draws_every_edge():
    text = graph.to_dot(NODES, LABELS, DEPS)
    assert text.startswith("digraph stages {") and text.endswith("}")
    assert '"render-good" [label="render-good\\nrender"];' in text
    for edge in ('"gen" -> "render-good";', '"render-good" -> "duel";', '"gen" -> "duel";'):
        assert f"  {edge}" in text.splitlines()
    assert text.count("->") == 3


def test_text_lists_steps_with_their_dependencies():
    assert graph.to_text(NODES, LABELS, DEPS).splitlines() == [
        "step 1",
        "  gen          generate",
        "step 2",
        "  render-good  render    after gen",
        "step 3",
        "  duel         judge     after render-good, gen",
    ]


# -- the plan of the quickstart manifest -----------------------------------------------------------


def quickstart(*sets: str):
    return load_manifest(QUICKSTART, environ={}, sets=sets)


class FakeState:
    """A ledger: per stage, its runs in order as (fingerprint, stage inputs, items done)."""

    def __init__(self):
        self.runs: dict[str, list[tuple[str, dict, frozenset[str]]]] = {}

    def last_stage(self, stage_id: str) -> StageRecord | None:
        runs = self.runs.get(stage_id)
        return StageRecord(runs[-1][0], runs[-1][1]) if runs else None

    def done_items(self, stage_id: str, fingerprint: str) -> frozenset[str]:
        return frozenset().union(*(done for fp, _, done in self.runs.get(stage_id, []) if fp == fingerprint))


def ran(manifest, state: FakeState | None = None, done: dict[str, list[str]] | None = None) -> FakeState:
    """`state` after a run of every stage of `manifest` (complete, or `done` items for some stages)."""
    state = state or FakeState()
    plan = make_plan(manifest)
    fingerprints = {s.id: s.fingerprint for s in plan.stages}
    deps = dependency_map(manifest)
    for stage_plan in plan.stages:
        stage = manifest.stages[stage_plan.id]
        inputs = stage_inputs(stage, manifest, {d: fingerprints[d] for d in deps[stage.id]})
        items = (done or {}).get(stage.id, stage_plan.items)
        state.runs.setdefault(stage.id, []).append((stage_plan.fingerprint, inputs, frozenset(items)))
    return state


def decisions(plan) -> dict[str, tuple[str, list[str]]]:
    return {s.id: (s.action, s.reasons) for s in plan.stages}


def test_quickstart_steps_and_items():
    plan = make_plan(quickstart())
    assert plan.steps == [["generate-good", "generate-poor"], ["render-good", "render-poor"], ["duel"], ["report"]]
    assert plan.stage("render-good").items == STEMS  # the items of the stage it renders
    assert plan.stage("duel").items == STEMS
    assert plan.stage("report").items == ["report"]
    assert plan.stage("duel").after == ["render-poor", "render-good"]
    assert plan.stage("duel").step == 3
    assert plan.stage("render-good").pods == ["renderer"]


def test_empty_state_never_ran():
    for state in (None, FakeState()):
        plan = make_plan(quickstart(), state)
        assert {s.action for s in plan.stages} == {RUN}
        assert all(s.reasons == ["never ran"] for s in plan.stages)


def test_everything_done_is_skipped():
    manifest = quickstart()
    plan = make_plan(manifest, ran(manifest))
    assert decisions(plan)["generate-good"] == (SKIP, ["up to date (8/8 items done)"])
    assert decisions(plan)["report"] == (SKIP, ["up to date"])
    assert {s.action for s in plan.stages} == {SKIP}


def test_missing_items_run_again():
    manifest = quickstart()
    state = ran(manifest, done={"generate-good": STEMS[:5]})
    plan = make_plan(manifest, state)
    assert decisions(plan)["generate-good"] == (RUN, ["3/8 items missing"])
    assert plan.stage("generate-poor").action == SKIP
    assert plan.stage("render-good").action == SKIP  # its own items are all done


def test_a_changed_seed_names_old_and_new_values():
    state = ran(quickstart())
    plan = make_plan(quickstart("vars.seed=7"), state)
    assert decisions(plan)["generate-good"] == (RUN, ["parameter seed changed 42→7"])


def test_an_upstream_change_reaches_downstream_stages_as_input_changed():
    state = ran(quickstart())
    plan = make_plan(quickstart("vars.seed=7"), state)
    assert decisions(plan)["render-good"] == (RUN, ["input changed"])
    assert decisions(plan)["duel"] == (RUN, ["parameter seed changed 42→7", "input changed"])
    assert decisions(plan)["report"] == (RUN, ["input changed"])


def test_an_upstream_change_on_one_branch_leaves_the_other_alone():
    state = ran(quickstart())
    plan = make_plan(quickstart("stages.generate-good.batch_size=4"), state)
    assert decisions(plan)["generate-good"] == (RUN, ["parameter batch_size changed"])
    assert plan.stage("render-good").action == RUN
    assert plan.stage("generate-poor").action == SKIP
    assert plan.stage("render-poor").action == SKIP


def test_output_and_pod_changes_are_named():
    state = ran(quickstart())
    plan = make_plan(quickstart("stages.render-good.output=renders/good",
                                "pods.gen-poor.command=python -m other"), state)
    assert decisions(plan)["render-good"] == (RUN, ["output changed out/render-good→renders/good"])
    assert decisions(plan)["generate-poor"] == (RUN, ["pod image changed"])


def test_a_new_runner_version_is_named():
    manifest = quickstart()
    state = ran(manifest)
    _, inputs, done = state.runs["report"][-1]
    state.runs["report"] = [("an-old-fingerprint", {**inputs, "runner": "0.0.1"}, done)]
    plan = make_plan(manifest, state)
    assert decisions(plan)["report"] == (RUN, [f"runner version changed 0.0.1→{__version__}"])


def test_going_back_to_a_configuration_whose_items_are_done_skips():
    state = ran(quickstart())
    ran(quickstart("vars.seed=7"), state)  # the last runs were with seed 7
    plan = make_plan(quickstart(), state)
    assert {s.action for s in plan.stages} == {SKIP}
    assert decisions(plan)["generate-good"] == (SKIP, ["up to date (8/8 items done)"])


def test_items_done_under_another_fingerprint_do_not_count():
    state = ran(quickstart("vars.seed=7"))
    plan = make_plan(quickstart(), state)
    assert decisions(plan)["generate-good"] == (RUN, ["parameter seed changed 7→42"])


def test_forced_stages_run():
    manifest = quickstart()
    state = ran(manifest)
    plan = make_plan(manifest, state, force={"duel"})
    assert decisions(plan)["duel"] == (RUN, ["forced"])
    assert plan.stage("report").action == SKIP
    assert {s.action for s in make_plan(manifest, state, force={"*"}).stages} == {RUN}


def test_fingerprints_are_stable_across_loads_and_differ_between_stages():
    first, second = make_plan(quickstart()), make_plan(quickstart())
    assert [s.fingerprint for s in first.stages] == [s.fingerprint for s in second.stages]
    assert len({s.fingerprint for s in first.stages}) == len(first.stages)


def test_plan_json_counts_items_instead_of_listing_them():
    data = make_plan(quickstart()).to_json()
    duel = next(s for s in data["stages"] if s["id"] == "duel")
    assert duel["item_count"] == 8 and "items" not in duel
    assert data["steps"][0] == ["generate-good", "generate-poor"]


# -- fingerprints and secrets ----------------------------------------------------------------------

SECRET_MANIFEST = """\
version: 1
name: probe
secrets:
  key: {env: API_KEY}
  other: {env: OTHER_KEY}
stages:
  report:
    uses: report
    input: x/
    title: "Bearer ${{ secrets.NAME }}"
"""


def secret_fingerprint(tmp_path: Path, value: str, name: str = "key") -> tuple[str, str]:
    path = tmp_path / "m.yaml"
    path.write_text(SECRET_MANIFEST.replace("NAME", name))
    manifest = load_manifest(path, environ={"API_KEY": value, "OTHER_KEY": value})
    stage = manifest.stages["report"]
    return stage_fingerprint(stage, manifest, {}), canonical(stage_inputs(stage, manifest, {}))


def test_fingerprints_never_contain_a_secret_value(tmp_path):
    fingerprint, text = secret_fingerprint(tmp_path, "sk-canary-5531")
    assert "sk-canary-5531" not in text and "sk-canary-5531" not in fingerprint
    assert '"title":{"secret":["key"]}' in text


def test_fingerprints_do_not_change_with_a_secret_value(tmp_path):
    assert secret_fingerprint(tmp_path, "one")[0] == secret_fingerprint(tmp_path, "two")[0]


def test_fingerprints_change_with_which_secret_is_used(tmp_path):
    assert secret_fingerprint(tmp_path, "one", "key")[0] != secret_fingerprint(tmp_path, "one", "other")[0]


def test_stage_fingerprint_covers_its_parameters():
    manifest = quickstart()
    stage = manifest.stages["report"]
    changed = dataclasses.replace(stage, params={**stage.params, "win_margin": 0.1})
    assert stage_fingerprint(stage, manifest, {"duel": "x"}) != stage_fingerprint(changed, manifest, {"duel": "x"})
    assert stage_fingerprint(stage, manifest, {"duel": "x"}) != stage_fingerprint(stage, manifest, {"duel": "y"})


@pytest.mark.parametrize("replacement", [None, "missing", "crlf"])
def test_the_judge_fingerprint_hashes_the_templates_the_judge_renders(tmp_path, replacement):
    """Planning reads the templates without Jinja2; the digest must stay the judge's own, or every
    judge stage of an existing ledger would run again."""
    from runner404.judge.messages import TEMPLATE_NAMES, Templates

    manifest = quickstart()
    stage = manifest.stages["duel"]
    folder = tmp_path / "wording"
    if replacement is not None:
        stage = dataclasses.replace(stage, params={**stage.params, "templates": str(folder)})
    if replacement == "crlf":
        folder.mkdir()
        (folder / TEMPLATE_NAMES[0]).write_bytes(b"Judge {{ prompt }}\r\nfairly.\r\n")
    planned = stage_inputs(stage, manifest, {})["templates"]
    assert planned == Templates(folder if replacement else None).digest()
    assert (planned == Templates().digest()) == (replacement != "crlf")


# -- parse_duration --------------------------------------------------------------------------------


def test_parse_duration_units():
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("90s") == 90.0
    assert parse_duration("15m") == 900.0
    assert parse_duration("4h") == 14400.0
    assert parse_duration("1.5m") == 90.0


def test_parse_duration_numbers_are_seconds():
    assert parse_duration(12) == 12.0
    assert parse_duration(2.5) == 2.5
    assert isinstance(parse_duration(12), float)


@pytest.mark.parametrize("value", ["", "90", "15 m", "4d", "-5s", "1h30m", "ms", True])
def test_parse_duration_rejects_other_values(value):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)
