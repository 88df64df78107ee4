"""Round prompt sets, the competition cache, `prompts.<id>` expressions and the collector's rule."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from pathlib import Path

import httpx
import pytest

from runner404.chain.competition import CompetitionError
from runner404.chain.flows import cdn_preflight
from runner404.collector import (MAX_JS_BYTES, FetchFailure, Limits, fetch_js, js_url, read_local,
                                 template_problem)
from runner404.errors import ManifestError
from runner404.manifest import load_manifest
from runner404.rounds import CachedCompetition, UrlCache, cache_dir, read_round
from runner404.sim.cdn import start_cdn

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "competition"
ROUND24_SEED = 314159265
FAST = Limits(retry_wait=0.05, timeout=2.0)


@pytest.fixture
def served(tmp_path):
    """The fixture competition on a loopback static server (the CDN stand-in)."""
    root = tmp_path / "www"
    shutil.copytree(FIXTURE, root / "competition")
    server = start_cdn(root)
    yield server, f"{server.url}/competition"
    server.stop()


def manifest(tmp_path: Path, prompts: str, stages: str = "", name: str = "m.yaml") -> Path:
    text = "version: 1\nname: probe\nprompts:\n" + textwrap.indent(textwrap.dedent(prompts), "  ")
    text += "stages:\n" + textwrap.indent(textwrap.dedent(stages or """\
        leader: {uses: fetch, prompts: r, url: leader/}
    """), "  ")
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path: Path, environ: dict | None = None, **kwargs):
    return load_manifest(path, environ=environ or {}, **kwargs)


def errors_of(path: Path, environ: dict | None = None) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load(path, environ)
    return [f"{d.line}:{d.col}: {d.message}" for d in info.value.diagnostics if d.severity == "error"]


# --- the cache ---------------------------------------------------------------------------------

def test_url_cache_keeps_files_by_url_and_content_hash(tmp_path):
    cache = UrlCache(tmp_path / "cache")
    assert cache.get("https://x/a") is None
    cache.put("https://x/a", b"one")
    cache.put("https://x/b", b"one")  # same content: one blob
    assert cache.get("https://x/a")[0] == b"one" and cache.get("https://x/b")[0] == b"one"
    assert len(list((tmp_path / "cache/blobs").iterdir())) == 1
    blob = next((tmp_path / "cache/blobs").iterdir())
    blob.write_bytes(b"tampered")
    assert cache.get("https://x/a") is None  # a corrupt blob is a miss, never wrong content


def test_round_files_are_read_once_then_from_the_cache(tmp_path, served):
    server, base = served
    cache = UrlCache(tmp_path / "cache")
    first = read_round(CachedCompetition(base, cache), 24)
    assert first.seed == ROUND24_SEED and len(first.urls) == 6 and first.urls[0][0] == 1
    requests = server.stats.requests
    again = read_round(CachedCompetition(base, cache), 24)
    assert again == first and server.stats.requests == requests  # no network for a pinned file
    server.stop()
    offline = read_round(CachedCompetition(base, cache), 24)
    assert offline.urls == first.urls and offline.seed == ROUND24_SEED


def test_state_and_config_are_read_from_the_network_first(tmp_path, served):
    server, base = served
    cache = UrlCache(tmp_path / "cache")
    assert CachedCompetition(base, cache).state().current_round == 24
    (server.root / "competition/state.json").write_text('{"current_round": 25, "stage": "open"}')
    assert CachedCompetition(base, cache).state().current_round == 25  # not the cached 24
    server.stop()
    offline = CachedCompetition(base, cache)
    assert offline.state().current_round == 25
    assert len(offline.stale) == 1 and "using the copy cached at" in offline.stale[0]
    with pytest.raises(CompetitionError, match=r"Failed to fetch config\.json from .*; no cached copy in .*cache "
                                               r"either \(read the round once with network access"):
        offline.config()


def test_a_missing_round_is_not_blamed_on_the_network(tmp_path, served):
    _, base = served
    with pytest.raises(CompetitionError) as info:
        read_round(CachedCompetition(base, UrlCache(tmp_path / "cache")), 99)
    assert "HTTP 404" in str(info.value) and "cached copy" not in str(info.value)


# --- prompt sets in manifests --------------------------------------------------------------------

def test_a_round_prompt_set_from_a_folder_relative_to_the_manifest(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "competition")
    path = manifest(tmp_path, """\
        r: {round: 23, competition_url: competition}
    """, """\
        leader: {uses: fetch, prompts: r, url: "https://cdn.example/{stem}.js"}
        report: {uses: report, input: out/duel, win_margin: "${{ prompts.r.config.win_margin }}",
                 title: "round ${{ prompts.r.round }} seed ${{ prompts.r.seed }}"}
    """)
    m = load(path)
    prompts = m.prompt_sets["r"]
    assert prompts.round == 23 and prompts.seed == 2718281828 and len(prompts.stems) == 6
    expected = [line.rsplit("/", 1)[1].split(".")[0] for line in
                (FIXTURE / "rounds/23/prompts.txt").read_text().split()]
    assert prompts.stems == expected
    assert prompts.prompts[0].image_url.startswith("https://sn12domain.org/procgen/")
    assert m.stages["report"].params["win_margin"] == 0.07
    assert m.stages["report"].params["title"] == "round 23 seed 2718281828"
    assert not (tmp_path / ".runner404").exists()  # a local folder is not cached


def test_current_round_the_environment_default_and_a_seed_override(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "competition")
    path = manifest(tmp_path, """\
        r: {round: current, seed: 7}
    """, """\
        leader: {uses: fetch, prompts: r, url: leader/}
        report: {uses: report, input: out/duel, win_margin: 0.1, title: "${{ prompts.r.round }}/${{ prompts.r.seed }}"}
    """)
    m = load(path, {"RUNNER404_COMPETITION_URL": "competition"})  # a folder: relative to the manifest
    assert m.prompt_sets["r"].round == 24 and m.prompt_sets["r"].seed == 7
    assert m.data["prompts"]["r"] == {"round": 24, "seed": 7, "competition_url": "competition"}
    assert m.stages["report"].params["title"] == "24/7"


def test_over_http_the_cache_makes_validate_work_offline(tmp_path, served):
    server, base = served
    path = manifest(tmp_path, f"""\
        r: {{round: current, competition_url: "{base}"}}
    """, """\
        gen: {uses: report, input: out/duel, win_margin: "${{ prompts.r.config.win_margin }}",
              title: "seed ${{ prompts.r.seed }}"}
        leader: {uses: fetch, prompts: r, url: leader/}
    """)
    online = load(path)
    assert online.prompt_sets["r"].seed == ROUND24_SEED and not online.warnings
    assert sorted(p.name for p in (cache_dir(tmp_path) / "urls").iterdir())  # cached by URL
    server.stop()
    offline = load(path)
    assert offline.prompt_sets["r"].stems == online.prompt_sets["r"].stems
    assert offline.stages["gen"].params == online.stages["gen"].params
    warnings = [d.message for d in offline.warnings]
    assert any("state.json could not be read" in w and "using the copy cached" in w for w in warnings)
    assert any("config.json could not be read" in w for w in warnings)


def test_offline_without_a_cache_is_a_positioned_error(tmp_path):
    path = manifest(tmp_path, """\
        r:
          round: 12
          competition_url: http://127.0.0.1:9/competition
    """)
    (message,) = errors_of(path)
    assert message.startswith("5:12: prompt set 'r': Failed to fetch prompts.txt from "
                              "http://127.0.0.1:9/competition/rounds/12/prompts.txt: ConnectError")
    assert "no cached copy in" in message and "set competition_url to a local copy" in message


def test_a_failed_seed_is_reported_once_at_the_prompt_set(tmp_path):
    competition = Path(shutil.copytree(FIXTURE, tmp_path / "competition"))
    (competition / "rounds/24/seed.json").unlink()
    path = manifest(tmp_path, """\
        r: {round: 24, competition_url: competition}
    """, """\
        a: {uses: report, input: out/duel, title: "seed ${{ prompts.r.seed }}"}
        b: {uses: report, input: out/duel2, title: "seed ${{ prompts.r.seed }}"}
        leader: {uses: fetch, prompts: r, url: leader/}
    """)
    (message,) = errors_of(path)
    assert message.startswith("4:14: prompt set 'r': Failed to fetch seed.json from ")


def test_bad_stems_in_a_round_name_the_line(tmp_path):
    competition = Path(shutil.copytree(FIXTURE, tmp_path / "competition"))
    (competition / "rounds/24/prompts.txt").write_text("https://x/a.png\n\nhttps://x/Bad_Stem.png\nhttps://y/a.png\n")
    path = manifest(tmp_path, """\
        r: {round: 24, competition_url: competition}
    """)
    assert errors_of(path) == [
        "4:14: prompt set 'r': rounds/24/prompts.txt line 3: stem 'bad_stem' (derived from 'https://x/Bad_Stem.png') "
        "must be lowercase letters and digits only",
        "4:14: prompt set 'r': rounds/24/prompts.txt line 4: duplicate stem 'a' (also rounds/24/prompts.txt line 1)"]


def test_prompts_of_a_file_set_expose_its_seed(tmp_path):
    (tmp_path / "p.json").write_text('{"prompts": [{"image_url": "https://x/a.png"}], "seed": 99}')
    path = manifest(tmp_path, """\
        f: {file: p.json}
        g: {items: [https://x/b.png]}
    """, """\
        a: {uses: fetch, prompts: f, url: "leader/", output: "out/${{ prompts.f.seed }}"}
        b: {uses: fetch, prompts: g, url: "${{ prompts.g.seed }}"}
    """)
    (message,) = errors_of(path)
    assert "prompt set 'g' has no seed: set seed: on it" in message


# --- the collector's rule -----------------------------------------------------------------------

def test_urls_and_templates():
    assert js_url("https://cdn.example/me/", "abc") == "https://cdn.example/me/abc.js"
    assert js_url("https://cdn.example/{stem}.js?x=1", "abc") == "https://cdn.example/abc.js?x=1"
    assert template_problem("https://cdn.example/{stem}.js") is None
    assert template_problem("leader/") is None and template_problem("file:///srv/leader") is None
    assert "unknown placeholder {hotkey}" in template_problem("https://x/{hotkey}/{stem}.js")
    assert "only once" in template_problem("https://x/{stem}/{stem}.js")
    assert "unsupported scheme s3://" in template_problem("s3://bucket/leader")


def test_local_files_get_the_same_checks(tmp_path):
    (tmp_path / "ok.js").write_text("export default function generate(THREE) {}\n")
    (tmp_path / "big.js").write_bytes(b"a" * (MAX_JS_BYTES + 1))
    (tmp_path / "bin.js").write_bytes(b"\xff\xfe\x00")
    assert read_local(tmp_path / "ok.js").startswith(b"export")
    for name, kind, text in (("big.js", "too_large", "over the 1 MiB limit (1048577 bytes)"),
                             ("bin.js", "not_utf8", "not UTF-8 text (invalid start byte at byte 0)"),
                             ("none.js", "not_found", "not found")):
        with pytest.raises(FetchFailure) as info:
            read_local(tmp_path / name)
        assert info.value.kind == kind and info.value.reason.startswith(text)


def _fetch(server, name: str, limits: Limits = FAST) -> bytes:
    async def go():
        async with httpx.AsyncClient() as client:
            return await fetch_js(client, f"{server.url}/{name}", limits)
    return asyncio.run(go())


def test_downloads_as_the_collector_does(tmp_path):
    (tmp_path / "ok.js").write_text("x" * 100)
    (tmp_path / "moved.js").write_text("x")
    (tmp_path / "flaky.js").write_text("fine")
    (tmp_path / "big.js").write_text("x")
    server = start_cdn(tmp_path, redirect={"moved"}, flaky={"flaky"}, oversize={"big"}, chunked=True)
    try:
        assert _fetch(server, "ok.js") == b"x" * 100
        assert _fetch(server, "flaky.js") == b"fine"  # the second try succeeds
        assert server.stats.by_path["/flaky.js"] == 2
        with pytest.raises(FetchFailure) as info:
            _fetch(server, "moved.js")
        assert info.value.reason == ("HTTP 302 redirect to /_redirected/moved.js (the validators' collector does "
                                     "not follow redirects) (2 tries)")
        with pytest.raises(FetchFailure) as info:  # no Content-Length: cut off while streaming
            _fetch(server, "big.js")
        assert info.value.kind == "too_large" and server.stats.by_path["/big.js"] == 1  # not tried again
        with pytest.raises(FetchFailure) as info:
            _fetch(server, "gone.js", Limits(tries=3, retry_wait=0.01))
        assert info.value.reason == "HTTP 404 Not Found (3 tries)" and info.value.detail["tries"] == 3
    finally:
        server.stop()


def test_a_slow_file_times_out(tmp_path):
    (tmp_path / "slow.js").write_text("x")
    server = start_cdn(tmp_path, slow={"slow"}, slow_seconds=3)
    try:
        with pytest.raises(FetchFailure) as info:
            _fetch(server, "slow.js", Limits(tries=1, timeout=0.3))
        assert info.value.kind == "timeout" and info.value.reason.startswith("timed out after 0.3 s")
    finally:
        server.stop()


def test_cdn_preflight_counts_what_the_validators_would_find(tmp_path):
    competition = Path(shutil.copytree(FIXTURE, tmp_path / "competition"))
    stems = [u.rsplit("/", 1)[1].split(".")[0] for u in (competition / "rounds/24/prompts.txt").read_text().split()]
    cdn = tmp_path / "cdn"
    cdn.mkdir()
    for stem in stems[1:]:
        (cdn / f"{stem}.js").write_text("export default function generate(THREE) {}\n")
    server = start_cdn(cdn)
    try:
        from runner404.chain.competition import Competition

        report = cdn_preflight(Competition(competition), server.url, limits=FAST)
        assert report.round == 24 and report.total == 6 and len(report.found) == 5
        assert report.missing == {stems[0]: "HTTP 404 Not Found (2 tries)"}
        assert report.summary().startswith(f"CDN preflight: the validators would find 5/6 stems at {server.url} "
                                           f"for round 24; 1 missing: {stems[0]}.js: HTTP 404")
        assert cdn_preflight(Competition(competition), server.url, stems=stems[1:], limits=FAST).ok
    finally:
        server.stop()


def test_prompt_sets_see_vars_and_env_but_not_stages_or_other_sets(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "competition")
    path = manifest(tmp_path, """\
        r: {round: "${{ vars.round }}", competition_url: "${{ env.COMP }}"}
        s: {items: [https://x/a.png], seed: "${{ prompts.r.seed }}"}
        t: {items: [https://x/b.png], seed: "${{ stages.leader.outputs.dir }}"}
    """, """\
        leader: {uses: fetch, prompts: r, url: leader/}
        a: {uses: fetch, prompts: s, url: leader/, output: out/a}
        b: {uses: fetch, prompts: t, url: leader/, output: out/b}
    """)
    path.write_text(path.read_text().replace("prompts:\n", "vars: {round: 23}\nprompts:\n", 1))
    assert errors_of(path, {"COMP": "competition"}) == [
        "6:40: in ${{ prompts.r.seed }}: prompt sets cannot refer to other prompt sets",
        "7:40: in ${{ stages.leader.outputs.dir }}: prompt sets cannot refer to stages"]
    m = load(path, {"COMP": "competition"}, sets=["prompts.s.seed=1", "prompts.t.seed=2", "vars.round=24"])
    assert m.prompt_sets["r"].round == 24 and m.prompt_sets["r"].seed == ROUND24_SEED
