"""Competition data in manifests: a round prompt set from a competition folder, `fetch` from a CDN
stand-in (missing, oversize, slow, not UTF-8; resumed after SIGKILL), the round-eval pipeline on
stand-ins, and the CDN preflight of the `commit` stage on the rehearsal chain."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import FIXTURES
from engine_helpers import events, ledger, start, wait_for_event, write_modules
from runner404 import png
from runner404.sim.cdn import start_cdn
from runner404.sim.generator import generate_module
from runner404.sim.http import Knobs

COMPETITION = FIXTURES / "competition"


def _stems(round_number: int) -> list[str]:
    urls = (COMPETITION / f"rounds/{round_number}/prompts.txt").read_text().split()
    return [u.rsplit("/", 1)[1].split(".")[0] for u in urls]


def _items(folder: Path, stage: str, status: str) -> dict[str, str | None]:
    rows = ledger(folder).db.execute("SELECT item, status, reason FROM items WHERE stage=?", (stage,)).fetchall()
    return {r["item"]: r["reason"] for r in rows if r["status"] == status}


# --- fetch: 50 stems, faults, SIGKILL, resume ----------------------------------------------------

FETCH = """\
version: 1
name: fetch-test
prompts:
  set: {{file: prompts.txt}}
stages:
  leader:
    uses: fetch
    prompts: set
    url: {url}
    concurrency: 4
    timeout: 1s
    retry_wait: 0.2s
"""


@pytest.fixture
def fifty(tmp_path):
    """50 stems on a CDN stand-in: 2 missing, 1 oversize, 1 slow, 1 not UTF-8, 1 flaky, 1 redirected."""
    root = tmp_path / "cdn"
    stems = write_modules(root, 50)
    (root / "m020.js").write_bytes(b"export default function generate(THREE) { return '\xff'; }\n")
    server = start_cdn(root, knobs=Knobs(latency=0.15), missing={"m003", "m017"}, oversize={"m005"},
                       slow={"m010"}, slow_seconds=4, flaky={"m030"}, redirect={"m040"})
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "prompts.txt").write_text("".join(f"https://img.example/{s}.png\n" for s in stems))
    (folder / "m.yaml").write_text(FETCH.format(url=server.url))  # a base: <url>/<stem>.js, as the collector
    yield folder, server, stems
    server.stop()


FAILING = {"m003": "HTTP 404 Not Found (2 tries)", "m017": "HTTP 404 Not Found (2 tries)",
           "m005": "over the 1 MiB limit (Content-Length 1049600)", "m010": "timed out after 1 s",
           "m020": "not UTF-8 text (invalid start byte at byte 50)",
           "m040": "HTTP 302 redirect to /_redirected/m040.js"}


def test_fetch_fifty_stems_is_resumed_after_a_kill(fifty, cli):
    folder, server, stems = fifty
    process = start(folder)
    wait_for_event(folder, "item_done", 12)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done_first = set(_items(folder, "leader", "done"))
    assert 12 <= len(done_first) < 44  # the kill landed in the middle of the fetch
    before = dict(server.stats.by_path)

    result = cli(["run", "m.yaml"], cwd=folder)
    assert result.exit_code == 4, result.stdout + result.stderr  # partial: some stems are missing
    requested = {p.strip("/").removesuffix(".js") for p, n in server.stats.by_path.items() if n > before.get(p, 0)}
    assert requested == set(stems) - done_first  # only what was not done is fetched again
    assert server.stats.by_path["/m040.js"] >= 2 and server.stats.by_path["/m030.js"] >= 2  # tried twice

    failed = _items(folder, "leader", "failed")
    assert set(failed) == set(FAILING)
    for stem, reason in FAILING.items():
        assert failed[stem].startswith(f"{server.url}/{stem}.js: {reason}"), failed[stem]
    out = folder / "out/leader"
    fetched = sorted(p.name for p in out.iterdir())
    assert fetched == sorted(f"{s}.js" for s in stems if s not in FAILING)  # no partial or temporary files
    for name in fetched:
        assert (out / name).read_bytes() == (server.root / name).read_bytes()
    assert "  leader  fetch  partial  " in result.stdout
    assert f"leader/m003: {server.url}/m003.js: HTTP 404 Not Found (2 tries)" in result.stdout

    again_before = dict(server.stats.by_path)
    third = cli(["run", "m.yaml"], cwd=folder)
    assert third.exit_code == 4
    retried = {p.strip("/").removesuffix(".js") for p, n in server.stats.by_path.items() if n > again_before.get(p, 0)}
    assert retried == set(FAILING)  # done stems are never downloaded twice; a redirect is never followed


def test_a_fixed_cdn_finishes_the_fetch(fifty, cli):
    folder, server, stems = fifty
    assert cli(["run", "m.yaml"], cwd=folder).exit_code == 4
    server.options.missing.clear()
    server.options.oversize.clear()
    server.options.slow.clear()
    server.options.redirect.clear()
    (server.root / "m020.js").write_text("export default function generate(THREE) { return 1; }\n")
    before = dict(server.stats.by_path)
    result = cli(["run", "m.yaml"], cwd=folder)
    assert result.exit_code == 0, result.stdout
    assert {p for p, n in server.stats.by_path.items() if n > before.get(p, 0)} == {
        f"/{s}.js" for s in FAILING}
    assert len(list((folder / "out/leader").iterdir())) == 50


def test_fetch_from_a_published_folder(tmp_path, cli):
    stems = write_modules(tmp_path / "published", 3)
    (tmp_path / "prompts.txt").write_text("".join(f"https://img.example/{s}.png\n" for s in stems + ["m999"]))
    (tmp_path / "m.yaml").write_text(FETCH.format(url="published/{stem}.js"))
    result = cli(["run", "m.yaml"], cwd=tmp_path)
    assert result.exit_code == 4
    assert sorted(p.name for p in (tmp_path / "out/leader").iterdir()) == [f"{s}.js" for s in stems]
    (reason,) = _items(tmp_path, "leader", "failed").values()
    assert reason == "published/m999.js: not found"


def test_the_cdn_stand_in_runs_as_a_service(tmp_path):
    write_modules(tmp_path, 2)
    process = subprocess.Popen([sys.executable, "-m", "runner404.sim", "cdn", "--root", str(tmp_path),
                                "--missing", "m001"], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[-1]
        with urllib.request.urlopen(f"{url}/m000.js", timeout=10) as response:
            assert response.read().startswith(b"export default function generate(THREE)")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}/m001.js", timeout=10)
        assert info.value.code == 404
        with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as response:
            assert json.loads(response.read())["by_path"] == {"/m000.js": 1, "/m001.js": 1, "/_sim/stats": 1}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


# --- round prompts → generate / fetch → render → judge → report, on stand-ins ----------------------

ROUND_EVAL = """\
version: 1
name: round-test
provider: local
pods:
  generator: {preset: generator, command: python -m runner404.sim generator --quality good}
  renderer: {preset: renderer, command: python -m runner404.sim renderer}
  judge: {preset: judge, command: python -m runner404.sim vlm}
prompts:
  round:
    round: current
    competition_url: competition
stages:
  generate: {uses: generate, pod: generator, prompts: round, seed: "${{ prompts.round.seed }}"}
  fetch-leader: {uses: fetch, prompts: round, url: "CDN/leader"}
  render-mine: {uses: render, pod: renderer, input: "${{ stages.generate.outputs.dir }}", views: validator,
                img_size: 64}
  render-leader: {uses: render, pod: renderer, input: "${{ stages.fetch-leader.outputs.dir }}", views: validator,
                  img_size: 64}
  duel:
    uses: judge
    pod: judge
    prompts: round
    seed: "${{ prompts.round.seed }}"
    rules: validator
    left: "${{ stages.render-leader.outputs.dir }}"
    right: "${{ stages.render-mine.outputs.dir }}"
  report:
    uses: report
    input: "${{ stages.duel.outputs.dir }}"
    win_margin: "${{ prompts.round.config.win_margin }}"
"""


def test_round_eval_on_stand_ins(tmp_path, cli):
    """A local competition folder whose round-25 prompts are images on the CDN stand-in, which also
    serves the leader's published modules (one of them missing)."""
    www = tmp_path / "www"
    competition = Path(shutil.copytree(COMPETITION, tmp_path / "competition"))
    (competition / "state.json").write_text('{"current_round": 25, "stage": "miner_generation"}')
    (competition / "config.json").write_text(json.dumps({**json.loads((COMPETITION / "config.json").read_text()),
                                                         "win_margin": 0.05}))
    stems = [f"p{i}" for i in range(5)]
    www.mkdir()
    server = start_cdn(www, missing={"p4"})
    try:
        (www / "leader").mkdir()
        for i, stem in enumerate(stems):
            (www / f"{stem}.png").write_bytes(png.solid(32, 32, ((i * 61) % 256, (i * 97) % 256, 200)))
            (www / "leader" / f"{stem}.js").write_text(generate_module(stem, 1, "poor"))
        (competition / "rounds/25").mkdir()
        (competition / "rounds/25/prompts.txt").write_text("".join(f"{server.url}/{s}.png\n" for s in stems))
        (competition / "rounds/25/seed.json").write_text('{"seed": 4242}')
        (tmp_path / "m.yaml").write_text(ROUND_EVAL.replace("CDN", server.url))

        plan = json.loads(cli(["plan", "m.yaml", "--format", "json"], cwd=tmp_path).stdout)
        by_id = {s["id"]: s for s in plan["stages"]}
        assert by_id["render-leader"]["after"] == ["fetch-leader"] and by_id["fetch-leader"]["item_count"] == 5
        assert by_id["render-leader"]["item_count"] == 5

        result = cli(["run", "m.yaml"], cwd=tmp_path)
        assert result.exit_code == 4, result.stdout + result.stderr  # p4 is missing on the leader's CDN
        generated = sorted(p.name for p in (tmp_path / "out/generate").iterdir())
        assert generated == [f"{s}.js" for s in stems]
        assert (tmp_path / "out/generate/p0.js").read_text() == generate_module(
            "p0", 4242, "good", f"{server.url}/p0.png")  # the round's seed reached the generator
        assert sorted(p.name for p in (tmp_path / "out/fetch-leader").iterdir()) == [f"{s}.js" for s in stems[:4]]
        assert set(_items(tmp_path, "fetch-leader", "failed")) == {"p4"}
        assert set(_items(tmp_path, "render-leader", "failed")) == {"p4"}
        report = json.loads((tmp_path / "out/report/report.json").read_text())
        assert report["match"]["win_margin"] == 0.05  # from the competition's config.json
        assert report["provenance"]["seed"] == 4242
    finally:
        server.stop()


# --- the shipped round-eval manifest --------------------------------------------------------------

def test_round_eval_validates_offline_and_plans_the_whole_graph(cli):
    result = cli(["validate", "manifests/round-eval.yaml"])
    assert result.exit_code == 0, result.stderr
    plan = json.loads(cli(["plan", "manifests/round-eval.yaml", "--format", "json"]).stdout)
    stages = {s["id"]: s for s in plan["stages"]}
    assert set(stages) == {"generate", "fetch-leader", "render-mine", "render-leader", "duel", "report", "stop"}
    assert stages["render-leader"]["after"] == ["fetch-leader"]
    assert sorted(stages["duel"]["after"]) == ["render-leader", "render-mine"]
    assert all(stages[s]["item_count"] == 6 for s in ("generate", "fetch-leader", "render-leader", "duel"))


def test_round_eval_reads_another_round_and_competition_by_set(tmp_path, cli):
    result = cli(["validate", "manifests/round-eval.yaml", "--set", "vars.round=23",
                  "--set", f"vars.competition={COMPETITION}", "--format", "json"])
    assert result.exit_code == 0, result.stdout + result.stderr


# --- CDN preflight through the commit stage --------------------------------------------------------

COMMIT = """\
version: 1
name: commit-test
stages:
  commit-hash:
    uses: commit
    network: sim:chain.json
    competition_url: {competition}
    wallet: {{name: miner, hotkey: default}}
    hash: 0123456789abcdef0123456789abcdef01234567
  commit-repo:
    uses: commit
    needs: [commit-hash]
    network: sim:chain.json
    competition_url: {competition}
    wallet: {{name: miner, hotkey: default}}
    repo: your-org/your-generator
    cdn_url: {cdn}
    preflight: true
"""


@pytest.fixture
def published(tmp_path):
    """A CDN stand-in with every stem of round 24 published."""
    cdn = tmp_path / "cdn"
    cdn.mkdir()
    for stem in _stems(24):
        (cdn / f"{stem}.js").write_text(generate_module(stem, 1, "poor"))
    server = start_cdn(cdn)
    yield server
    server.stop()


def _commit_setup(tmp_path, cli, cdn_url: str) -> None:
    (tmp_path / "c.yaml").write_text(COMMIT.format(competition=COMPETITION, cdn=cdn_url))
    assert cli(["chain", "init", "chain.json", "--block", "8582370", "--wallet.name", "miner"],
               cwd=tmp_path).exit_code == 0


def test_preflight_passes_when_every_stem_downloads(tmp_path, cli, published):
    _commit_setup(tmp_path, cli, published.url)
    result = cli(["run", "c.yaml"], cwd=tmp_path)
    assert result.exit_code == 0, result.stdout + result.stderr
    committed = json.loads((tmp_path / "out/commit-repo/commit.json").read_text())
    assert committed["preflight"] == {"cdn_url": published.url, "round": 24, "stems": 6, "found": 6, "missing": {}}
    assert all(published.stats.by_path.get(f"/{s}.js") == 1 for s in _stems(24))
    assert "/" not in published.stats.by_path  # the preflight replaces the HEAD check of the root
    notes = [e["text"] for e in events(tmp_path) if e["event"] == "chain_note"]
    assert f"CDN preflight: the validators would find 6/6 stems at {published.url} for round 24" in notes


def test_preflight_refuses_missing_stems_unless_forced(tmp_path, cli, published):
    missing = _stems(24)[:2]
    published.options.missing.update(missing)
    _commit_setup(tmp_path, cli, published.url)
    refused = cli(["run", "c.yaml"], cwd=tmp_path)
    assert refused.exit_code == 1
    assert (f"CDN preflight: the validators would find 4/6 stems at {published.url} for round 24; 2 missing: "
            f"{missing[0]}.js: HTTP 404 Not Found (2 tries)") in refused.stdout
    assert "force: true / --force" in refused.stdout
    assert not (tmp_path / "out/commit-repo/commit.json").exists()
    subnet = json.loads(cli(["chain", "show", "chain.json"], cwd=tmp_path).stdout)["subnets"]["17"]
    assert "cdn_url" not in json.dumps(subnet["pending"] + subnet["revealed"])  # nothing was committed

    forced = cli(["run", "c.yaml", "--set", "stages.commit-repo.force=true"], cwd=tmp_path)
    assert forced.exit_code == 0, forced.stdout
    committed = json.loads((tmp_path / "out/commit-repo/commit.json").read_text())
    assert committed["preflight"]["found"] == 4 and sorted(committed["preflight"]["missing"]) == sorted(missing)
    assert "warning: CDN preflight: the validators would find 4/6 stems" in forced.stdout
