"""The judge stage on real renders of two generator qualities, against the VLM stand-in."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import MANIFESTS, run_cli
from engine_helpers import events, ledger
from runner404.sim.vlm import start_vlm

STEMS = ["apple", "boat", "cactus", "duck", "lamp", "mug", "tree", "vase"]


def _render(folder, views):
    """The quick start's generate and render stages: out/render-good and out/render-poor."""
    shutil.copytree(MANIFESTS / "quickstart", folder / "quickstart")
    text = (MANIFESTS / "quickstart.yaml").read_text()
    (folder / "m.yaml").write_text(text[:text.index("  duel:")])
    sets = [a for stage in ("render-good", "render-poor") for a in ("--set", f"stages.{stage}.views={views}")]
    result = run_cli(["run", "m.yaml", *sets], cwd=folder)
    assert result.exit_code == 0, result.stdout + result.stderr
    return folder


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("renders"), "404-cli")


@pytest.fixture(scope="module")
def validator_renders(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("validator-renders"), "validator")


JUDGE = """\
version: 1
name: judge-test
pods:
  judge: {{preset: judge, url: "{url}", health: {{interval: 0.05s}}}}
prompts:
  demo: {{file: quickstart/prompts.json}}
stages:
  duel:
    uses: judge
    pod: judge
    prompts: demo
    seed: 42
    left: out/render-poor
    right: out/render-good
    rules: {rules}
    concurrency: {concurrency}
    max_inflight: {max_inflight}
"""


def setup(tmp_path, renders, vlm, *, rules="404-cli", concurrency=8, max_inflight=32):
    shutil.copytree(renders / "quickstart", tmp_path / "quickstart")
    shutil.copytree(renders / "out", tmp_path / "out")
    (tmp_path / "m.yaml").write_text(JUDGE.format(url=vlm.url, rules=rules, concurrency=concurrency,
                                                  max_inflight=max_inflight))


def records(folder):
    return json.loads((folder / "out/duel/duels.json").read_text())["results"]


@pytest.fixture
def vlm():
    server = start_vlm()
    yield server
    server.stop()


@pytest.mark.parametrize("rules", ["404-cli", "validator"])
def test_the_better_generator_wins_the_match(tmp_path, cli, request, vlm, rules):
    # each preset judges its own view set (validator: front_below instead of front)
    renders = request.getfixturevalue("renders" if rules == "404-cli" else "validator_renders")
    setup(tmp_path, renders, vlm, rules=rules)
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 0, result.stdout + result.stderr
    match = json.loads((tmp_path / "out/duel/match.json").read_text())
    assert match["qualifies"] and match["margin"] >= 0.5, match
    assert [r["stem"] for r in records(tmp_path)] == STEMS
    for stem in STEMS:
        record = json.loads((tmp_path / f"out/duel/{stem}.json").read_text())
        assert list(record) == ["stem", "prompt_url", "winner", "detail"]
        assert record["prompt_url"] == f"images/{stem}.png"
    assert "qualifies at 0.07" in result.stdout


def test_a_rerun_asks_the_vlm_nothing(tmp_path, cli, renders, vlm):
    setup(tmp_path, renders, vlm)
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    calls = dict(vlm.calls_by_label)
    assert sum(calls.values()) >= 9 * len(STEMS)  # at least explain + 8 S1 calls per duel
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    assert dict(vlm.calls_by_label) == calls
    # one duel's side re-rendered: that duel alone is judged again
    grid = tmp_path / "out/render-good/mug/grid.png"
    grid.write_bytes(grid.read_bytes())
    assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
    judged = [e["item"] for e in events(tmp_path) if e["event"] == "item_done"]
    assert judged.count("mug") == 2 and judged.count("apple") == 1


def test_missing_and_broken_previews_never_crash_the_run(tmp_path, cli, renders, vlm):
    setup(tmp_path, renders, vlm)
    shutil.rmtree(tmp_path / "out/render-good/boat")                     # no folder on the right
    (tmp_path / "out/render-poor/duck/white/back.png").unlink()         # an incomplete left side
    (tmp_path / "out/render-good/lamp/gray/front.png").write_bytes(b"not a png")  # unreadable
    damaged = tmp_path / "out/render-poor/mug/white/front.png"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the image data: the chunk's CRC no longer matches
    damaged.write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "out/render-good/tree")
    shutil.rmtree(tmp_path / "out/render-poor/tree")                    # neither side
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 0, result.stdout
    by_stem = {r["stem"]: r for r in records(tmp_path)}
    assert (by_stem["boat"]["winner"], by_stem["boat"]["detail"]) == ("left", {"reason": "no preview from right"})
    assert by_stem["duck"]["winner"] == "right"
    assert by_stem["duck"]["detail"] == {"reason": "no preview from left", "missing": {"left": ["white/back.png"]}}
    assert by_stem["lamp"]["detail"]["missing"] == {"right": ["gray/front.png"]}
    assert by_stem["mug"]["winner"] == "right"
    assert by_stem["mug"]["detail"]["missing"] == {"left": ["white/front.png"]}
    assert (by_stem["tree"]["winner"], by_stem["tree"]["detail"]) == ("draw", {"reason": "no previews on either side"})


def test_vlm_faults_are_repaired_or_retried(tmp_path, cli, renders):
    server = start_vlm(fenced_rate=0.2, trailing_comma_rate=0.2, think_rate=0.2, malformed_rate=0.1,
                       fail_rate=0.1, seed=5)
    try:
        setup(tmp_path, renders, server)
        result = cli(["run", "m.yaml"], cwd=tmp_path)
        assert result.exit_code == 0, result.stdout
        assert len(records(tmp_path)) == len(STEMS)
        assert all(r["winner"] in ("left", "right", "draw") for r in records(tmp_path))
        warnings = [e for e in events(tmp_path) if e["event"] == "vlm_warning"]
        assert any("failed" in w["line"] for w in warnings)
    finally:
        server.stop()


def test_every_call_goes_through_the_shared_in_flight_limit(tmp_path, cli, renders):
    server = start_vlm(latency=0.02)
    try:
        setup(tmp_path, renders, server, concurrency=8, max_inflight=3)
        assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
        assert server.stats.peak_in_flight <= 3
    finally:
        server.stop()
    server = start_vlm(latency=0.05)
    try:
        folder = tmp_path / "wide"
        folder.mkdir()
        setup(folder, renders, server, concurrency=8, max_inflight=32)
        assert cli(["run", "m.yaml"], cwd=folder).exit_code == 0
        assert server.stats.peak_in_flight > 8  # duels and their calls really run side by side
    finally:
        server.stop()


def test_scripted_draws_go_through_every_stage(tmp_path, cli, renders):
    tie = json.dumps({"penalty_1": 5, "penalty_2": 5, "issues": "same"})
    script = {"s1_prompt_match": [tie], "s2bv_ab": [tie], "s2bv_ba": [tie], "s2ac_ab": [tie], "s2ac_ba": [tie],
              "s4_per_angle": [json.dumps({"verdict": "ok", "reason": "fine"})],
              "explain": [json.dumps({"issues": "both similar"})]}
    server = start_vlm(script=script)
    try:
        setup(tmp_path, renders, server)
        assert cli(["run", "m.yaml"], cwd=tmp_path).exit_code == 0
        record = records(tmp_path)[0]
        assert list(record["detail"]) == ["s1", "s2", "s3", "s4", "decided_by", "issues", "elapsed_seconds"]
        assert record["detail"]["s1"]["reason"].startswith("wpA=5.00 wpB=5.00")
        assert record["detail"]["issues"] == "both similar"
        assert server.calls_by_label["s4_per_angle"] == 8 * len(STEMS)
        rows = ledger(tmp_path).db.execute("SELECT count(*) FROM items WHERE stage='duel' AND status='done'")
        assert rows.fetchone()[0] == len(STEMS)
    finally:
        server.stop()
