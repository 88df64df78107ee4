"""generate → render through the stand-in Targon: layout, reruns, sharding, hostile archives."""

from __future__ import annotations

import json

import pytest

from conftest import serve_folder
from engine_helpers import events, ledger, tree
from runner404 import png
from runner404.sim.targon import start_targon
from runner404.views import VIEW_SETS

KEY = "tgn-test-key"
WHITE = sorted(f"{v.name}.png" for v in VIEW_SETS["404-cli"]["white"])
GRAY = sorted(f"{v.name}.png" for v in VIEW_SETS["404-cli"]["gray"])

MANIFEST = """\
version: 1
name: gen-test
secrets:
  targon: {{env: RUNNER404_TEST_TARGON_KEY}}
provider: {{type: targon, api_key: "${{{{ secrets.targon }}}}"}}
pods:
  generator:
    preset: generator
    image: runner404-sim/generator:good
    replicas: {replicas}
    keep: {keep}
    health: {{path: /health, timeout: 30s, interval: 0.05s}}
  renderer:
    preset: renderer
    health: {{path: /health, timeout: 30s, interval: 0.05s}}
prompts:
  set: {{file: prompts.json}}
stages:
  generate:
    uses: generate
    pod: generator
    prompts: set
    poll_interval: 0.05s
    warmup_timeout: {warmup_timeout}
{generate_extra}
  render:
    uses: render
    pod: renderer
    input: ${{{{ stages.generate.outputs.dir }}}}
    img_size: 32
    concurrency: 4
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A loopback web server of prompt images (a Targon generator cannot read local files)."""
    folder = tmp_path_factory.mktemp("images")
    for i in range(60):
        rgb = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        (folder / f"p{i:02d}.png").write_bytes(png.solid(16, 16, rgb))
    with serve_folder(folder) as url:
        yield url


def setup(folder, images_url, count, *, replicas=1, warmup_timeout="30s", generate_extra="", seed=7,
          keep=False):
    prompts = [{"image_url": f"{images_url}/p{i:02d}.png"} for i in range(count)]
    (folder / "prompts.json").write_text(json.dumps({"prompts": prompts, "seed": seed}))
    (folder / "m.yaml").write_text(MANIFEST.format(replicas=replicas, warmup_timeout=warmup_timeout,
                                                   generate_extra=generate_extra, keep=str(keep).lower()))
    return [f"p{i:02d}" for i in range(count)]


def run(cli, folder, sim, *extra):
    return cli(["run", "m.yaml", "--targon-url", sim.url, *extra], cwd=folder,
               environ={"RUNNER404_TEST_TARGON_KEY": KEY})


def since_last_run(folder):
    all_events = events(folder)
    start = max(i for i, e in enumerate(all_events) if e["event"] == "run_started")
    return all_events[start:]


def test_fifty_prompts_generate_and_render_in_the_exact_layout(tmp_path, cli, images):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02)
    try:
        stems = setup(tmp_path, images, 52)
        result = run(cli, tmp_path, sim)
        assert result.exit_code == 0, result.stdout + result.stderr
        generated = tmp_path / "out/generate"
        assert sorted(p.name for p in generated.iterdir()) == sorted(f"{s}.js" for s in stems)
        rendered = tmp_path / "out/render"
        expected = {f"{s}.png" for s in stems} | set(stems)
        assert {p.name for p in rendered.iterdir()} == expected
        for stem in stems:
            assert sorted(p.name for p in (rendered / stem).iterdir()) == ["gray", "grid.png", "white"]
            assert sorted(p.name for p in (rendered / stem / "white").iterdir()) == WHITE
            assert sorted(p.name for p in (rendered / stem / "gray").iterdir()) == GRAY
        assert sim.live_workloads() == []
        before = tree(tmp_path / "out")

        again = run(cli, tmp_path, sim)  # a rerun does nothing and starts no pod
        assert again.exit_code == 0
        assert [e["event"] for e in since_last_run(tmp_path)] == [
            "run_started", "stage_skipped", "stage_skipped", "teardown", "run_finished"]

        (generated / "p17.js").unlink()
        (rendered / "p30" / "gray" / "front.png").unlink()
        third = run(cli, tmp_path, sim)
        assert third.exit_code == 0, third.stdout
        done = [(e["stage"], e["item"]) for e in since_last_run(tmp_path) if e["event"] == "item_done"]
        # p17's .js is new, so its render is redone too (its input changed); p30 alone otherwise
        assert sorted(done) == [("generate", "p17"), ("render", "p17"), ("render", "p30")]
        assert tree(tmp_path / "out") == before
    finally:
        sim.stop()


def test_three_generator_workloads_each_get_a_disjoint_third(tmp_path, cli, images):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02)
    try:
        stems = setup(tmp_path, images, 30, replicas=3, keep=True)  # kept: their servers stay inspectable
        assert run(cli, tmp_path, sim).exit_code == 0
        generators = [w for w in sim.workloads.values() if "generator" in w.image]
        assert sorted(w.name for w in generators) == ["gen-test-generator-0", "gen-test-generator-1",
                                                      "gen-test-generator-2"]
        shards = [set(s for batch in w.server.batches for s in batch["stems"]) for w in generators]
        assert all(len(shard) == 10 for shard in shards)
        assert set.union(*shards) == set(stems) and sum(map(len, shards)) == 30
    finally:
        sim.stop()


def test_batch_size_splits_a_shard_into_batches(tmp_path, cli, images):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02)
    try:
        setup(tmp_path, images, 10, generate_extra="    batch_size: 4", keep=True)
        assert run(cli, tmp_path, sim).exit_code == 0
        (generator,) = [w for w in sim.workloads.values() if "generator" in w.image]
        assert [len(b["stems"]) for b in generator.server.batches] == [4, 4, 2]
        assert all(b["seed"] == 7 for b in generator.server.batches)
    finally:
        sim.stop()


def _failures(folder):
    return {r["item"]: r["reason"] for r in ledger(folder).db.execute(
        "SELECT item, reason FROM items WHERE stage='generate' AND status='failed'")}


def _outside_files(folder):
    """Files written anywhere but the output folders and the state folder."""
    allowed = ("out/generate/", "out/render/", ".runner404/")
    return [p for p in tree(folder) if not p.startswith(allowed) and p not in ("m.yaml", "prompts.json")]


@pytest.mark.parametrize("mode, reason", [
    ("traversal", None),  # ../../<stem>.js: only the name is used, so these are fine
    ("absolute", None),
    ("nested", None),
    ("huge", "over the 1024 KiB limit"),
    ("bomb", "limit"),
    ("duplicate", "holds 2 entries for"),
    ("extra", "entries; at most"),
    ("corrupt", "invalid ZIP archive from /results"),
    ("empty", "results archive is empty"),
])
def test_hostile_result_archives_end_as_clear_item_failures(tmp_path, cli, images, mode, reason):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02,
                       service_options={"generator_zip_mode": mode})
    try:
        stems = setup(tmp_path, images, 4)
        result = run(cli, tmp_path, sim)
        failures = _failures(tmp_path)
        if reason is None:
            assert result.exit_code == 0, result.stdout
            assert failures == {}
        else:
            assert result.exit_code == 4, result.stdout
            assert failures and all(reason in text for text in failures.values()), failures
        written = sorted(p.name for p in (tmp_path / "out/generate").iterdir())
        assert set(written) <= {f"{s}.js" for s in stems}
        assert _outside_files(tmp_path) == []
        assert sim.live_workloads() == []
    finally:
        sim.stop()


def test_failed_prompts_and_replace_and_warmup_timeouts_are_item_failures(tmp_path, cli, images):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02,
                       service_options={"generator_fail_stems": "p01,p03"})
    try:
        setup(tmp_path, images, 4)
        result = run(cli, tmp_path, sim)
        assert result.exit_code == 4
        assert set(_failures(tmp_path)) == {"p01", "p03"}
        assert all(r.startswith("generator failed: ") for r in _failures(tmp_path).values())
        assert "render/p01: no p01.js in " in result.stdout  # the render stage goes on with the rest
    finally:
        sim.stop()
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02,
                       service_options={"generator_warmup": 60})
    try:
        folder = tmp_path / "warm"
        folder.mkdir()
        setup(folder, images, 2, warmup_timeout="0.5s")
        result = run(cli, folder, sim)
        assert result.exit_code == 4
        assert all("timed out after 0.5s waiting for readiness" in r for r in _failures(folder).values())
    finally:
        sim.stop()


def test_a_busy_generator_is_waited_for(tmp_path, cli, images):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02,
                       service_options={"generator_busy_for": 0.5})
    try:
        setup(tmp_path, images, 3)
        assert run(cli, tmp_path, sim).exit_code == 0
    finally:
        sim.stop()


@pytest.mark.parametrize("options, reason", [
    ({"bad_base64_rate": 1.0}, "invalid base64 image"),
    ({"wrong_count_rate": 1.0}, "render returned 7 images, expected 8"),
])
def test_broken_renderer_answers_are_item_failures(tmp_path, cli, images, options, reason):
    sim = start_targon(api_key=KEY, url_delay=0.05, delete_delay=0.02, service_options=options)
    try:
        setup(tmp_path, images, 2)
        result = run(cli, tmp_path, sim)
        assert result.exit_code == 4
        rows = ledger(tmp_path).db.execute("SELECT reason FROM items WHERE stage='render'").fetchall()
        assert rows and all(reason in r["reason"] for r in rows), [r["reason"] for r in rows]
        assert not [p for p in (tmp_path / "out/render").iterdir()]  # nothing half-written
    finally:
        sim.stop()
