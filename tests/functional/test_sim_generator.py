"""The miner generator stand-in over loopback HTTP: runner404.sim.generator."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import stop_process

from runner404 import png
from runner404.sim import services
from runner404.sim.generator import BOMB_BYTES, HUGE_BYTES, GeneratorServer, generate_module, start_generator
from runner404.sim.threejs import check_module, module_features

RED = (210, 30, 30)
BLUE = (30, 50, 210)
WHITE = (255, 255, 255)
NOWHERE = "/nonexistent/prompt.png"  # poor generators never read it
FLAT_409 = {"detail": "Cannot accept batch", "current_status": "generating"}


@pytest.fixture
def started() -> Iterator:
    """Start generators with knobs; all are stopped at the end of the test."""
    servers: list[GeneratorServer] = []

    def start(**knobs) -> GeneratorServer:
        srv = start_generator(**knobs)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def client_for() -> Iterator:
    clients: list[httpx.Client] = []

    def make(srv: GeneratorServer) -> httpx.Client:
        c = httpx.Client(base_url=srv.url, timeout=10)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def prompts(*stems: str, url: str = NOWHERE) -> list[dict]:
    return [{"stem": stem, "image_url": url} for stem in stems]


def wait_status(c: httpx.Client, wanted: str, timeout: float = 5.0, **params) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = c.get("/status", params=params).json()
        if body["status"] == wanted or time.monotonic() > deadline:
            assert body["status"] == wanted, body
            return body
        time.sleep(0.01)


def run_batch(c: httpx.Client, items: list[dict], seed: int = 1) -> zipfile.ZipFile:
    response = c.post("/generate", json={"prompts": items, "seed": seed})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": len(items)}
    wait_status(c, "complete")
    return open_zip(c.get("/results"))


def open_zip(response: httpx.Response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    return zipfile.ZipFile(io.BytesIO(response.content))


def modules(zf: zipfile.ZipFile) -> dict[str, str]:
    """{stem: source} of the `.js` members; every one must pass the static checks."""
    found = {}
    for name in zf.namelist():
        if name.endswith(".js"):
            source = zf.read(name).decode()
            assert check_module(source) == [], (name, check_module(source))
            found[name.rsplit("/", 1)[-1][:-3]] = source
    return found


def failed(zf: zipfile.ZipFile) -> dict[str, str]:
    return json.loads(zf.read("_failed.json")) if "_failed.json" in zf.namelist() else {}


def write_png(path: Path, width: int, height: int, pixels: bytes) -> Path:
    path.write_bytes(png.encode(width, height, pixels))
    return path


def solid_png(tmp_path: Path, name: str, rgb: tuple[int, int, int]) -> Path:
    path = tmp_path / name
    path.write_bytes(png.solid(32, 32, rgb))
    return path


def tall_red_on_white(tmp_path: Path) -> Path:
    """A 60x60 white picture with a red rectangle 12 wide and 48 tall."""
    pixels = bytearray(bytes(WHITE) * 3600)
    for y in range(6, 54):
        for x in range(24, 36):
            pixels[(y * 60 + x) * 3:(y * 60 + x) * 3 + 3] = bytes(RED)
    return write_png(tmp_path / "tall.png", 60, 60, bytes(pixels))


def box_sizes(source: str) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in m.groups())
            for m in re.finditer(r"BoxGeometry\(([\d.]+), ([\d.]+), ([\d.]+)\)", source)]


# -- lifecycle ---------------------------------------------------------------------------------

def test_lifecycle_warmup_generate_progress_complete_results(started, client_for):
    srv = started(quality="poor", warmup=0.3, prompt_latency=0.1, gpu_capacity=1)
    c = client_for(srv)
    assert c.get("/health").json() == {"status": "ok"}  # up at once, while warming up
    assert c.get("/status").json() == {"status": "warming_up"}
    assert c.get("/results").status_code == 409
    assert wait_status(c, "ready") == {"status": "ready"}  # null fields left out
    refused = c.get("/results")
    assert refused.status_code == 409 and refused.json() == {"detail": "results not available"}

    stems = ["car", "tree", "lamp"]
    response = c.post("/generate", json={"prompts": prompts(*stems), "seed": 7},
                      headers={"Authorization": "Bearer anything"})  # a token is accepted, not required
    assert response.status_code == 200 and response.json() == {"accepted": 3}
    seen = set()
    deadline = time.monotonic() + 5
    while (body := c.get("/status").json())["status"] == "generating" and time.monotonic() < deadline:
        assert set(body) == {"status", "progress", "total"} and body["total"] == 3
        seen.add(body["progress"])
        time.sleep(0.01)
    assert body == {"status": "complete"}
    assert seen and min(seen) < 3 and seen <= {0, 1, 2, 3}
    assert c.get("/results/").status_code == 404

    first = c.get("/results")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/zip"
    assert first.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in first.headers
    zf = zipfile.ZipFile(io.BytesIO(first.content))
    assert sorted(zf.namelist()) == ["car.js", "lamp.js", "tree.js"]  # no _failed.json
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())
    found = modules(zf)
    assert set(found) == set(stems)
    for stem, source in found.items():
        assert source == generate_module(stem, 7, "poor")
        assert "export default function generate(THREE)" in source and "new THREE.Group()" in source
    assert c.get("/results").content == first.content  # byte-identical on repeat calls
    assert srv.batches == [{"stems": stems, "seed": 7, "image_urls": [NOWHERE] * 3}]


def test_results_are_deterministic_and_change_with_the_next_batch(started, client_for, tmp_path):
    red = solid_png(tmp_path, "red.png", RED)
    items = [{"stem": "a1", "image_url": str(red)}, {"stem": "b2", "image_url": str(red)}]
    one, two = started(), started()
    archives = [client_for(srv) for srv in (one, two)]
    first = [run_batch(c, items, seed=5) for c in archives]
    raw = [c.get("/results").content for c in archives]
    assert raw[0] == raw[1]  # same inputs, same bytes, on separate servers
    assert modules(first[0]) == modules(first[1])
    assert one.generated == 2
    run_batch(archives[0], items[:1], seed=5)
    assert archives[0].get("/results").content != raw[0]
    assert one.generated == 3 and len(one.batches) == 2


def test_gpu_capacity_runs_prompts_in_parallel(started, client_for):
    stems = ["p1", "p2", "p3", "p4"]
    timings = {}
    for capacity in (1, 4):
        srv = started(quality="poor", prompt_latency=0.15, gpu_capacity=capacity)
        c = client_for(srv)
        begin = time.monotonic()
        run_batch(c, prompts(*stems))
        timings[capacity] = time.monotonic() - begin
    assert timings[1] >= 0.6
    assert timings[4] < timings[1] - 0.2


# -- /generate rules -----------------------------------------------------------------------------

def test_idempotent_resubmit_and_409_while_generating(started, client_for):
    srv = started(quality="poor", prompt_latency=0.2, gpu_capacity=1)
    c = client_for(srv)
    items = prompts("aa", "bb")
    assert c.post("/generate", json={"prompts": items, "seed": 1}).json() == {"accepted": 2}
    assert c.get("/status").json()["status"] == "generating"
    again = c.post("/generate", json={"prompts": items[::-1], "seed": 9})  # same set, any order
    assert again.status_code == 200 and again.json() == {"accepted": 2}
    other = c.post("/generate", json={"prompts": prompts("cc"), "seed": 1})
    assert other.status_code == 409 and other.json() == FLAT_409
    wait_status(c, "complete")
    archive = c.get("/results").content
    again = c.post("/generate", json={"prompts": items, "seed": 1})  # complete: still idempotent
    assert again.status_code == 200 and again.json() == {"accepted": 2}
    assert c.get("/status").json() == {"status": "complete"}
    assert c.get("/results").content == archive
    assert len(srv.batches) == 1 and srv.resubmits == 2 and srv.generated == 2
    # A different batch is accepted in `complete` and replaces the results.
    zf = run_batch(c, prompts("cc"))
    assert zf.namelist() == ["cc.js"] and len(srv.batches) == 2


def test_busy_for_answers_409_with_the_flat_body(started, client_for):
    srv = started(quality="poor", busy_for=0.4)
    c = client_for(srv)
    body = c.get("/status").json()
    assert body["status"] == "generating" and body["total"] == 32 and 0 <= body["progress"] < 32
    refused = c.post("/generate", json={"prompts": prompts("aa"), "seed": 1})
    assert refused.status_code == 409 and refused.json() == FLAT_409
    assert c.get("/results").status_code == 409  # someone else's batch
    wait_status(c, "ready")
    assert run_batch(c, prompts("aa")).namelist() == ["aa.js"]
    assert srv.batches == [{"stems": ["aa"], "seed": 1, "image_urls": [NOWHERE]}]


def test_409_while_warming_up(started, client_for):
    srv = started(warmup=5)
    c = client_for(srv)
    refused = c.post("/generate", json={"prompts": prompts("aa"), "seed": 1})
    assert refused.status_code == 409
    assert refused.json() == {"detail": "Cannot accept batch", "current_status": "warming_up"}


@pytest.mark.parametrize("body", [
    {"prompts": prompts("Bad"), "seed": 1},
    {"prompts": prompts("a-b"), "seed": 1},
    {"prompts": prompts(""), "seed": 1},
    {"prompts": prompts("abc\n"), "seed": 1},
    {"prompts": prompts("ab", "cd", "ab"), "seed": 1},
    {"prompts": [{"stem": "ab"}], "seed": 1},
    {"prompts": [], "seed": 1},
    {"seed": 1},
    {"prompts": prompts("ab"), "seed": "1"},
    [1, 2],
], ids=["upper", "dash", "empty-stem", "newline", "duplicate", "no-url", "no-prompts", "missing", "seed-str",
        "not-object"])
def test_422_for_bad_bodies_even_while_warming_up(started, client_for, body):
    srv = started(warmup=5)
    c = client_for(srv)
    response = c.post("/generate", json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert srv.batches == []


def test_422_for_non_json_body(started, client_for):
    c = client_for(started())
    response = c.post("/generate", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


# -- replace ---------------------------------------------------------------------------------------

def test_replace_after_a_batch_needs_a_budget(started, client_for):
    srv = started(quality="poor", replace_after=1)
    c = client_for(srv)
    assert c.get("/status", params={"replacements_remaining": 3}).json() == {"status": "ready"}
    run_batch(c, prompts("aa"))
    body = c.get("/status", params={"replacements_remaining": 3}).json()
    assert body["status"] == "replace" and isinstance(body.get("payload"), dict)
    assert c.get("/status", params={"replacements_remaining": 0}).json() == {"status": "complete"}
    assert c.get("/status").json() == {"status": "complete"}  # missing parameter = 0, as the reference
    assert c.get("/results").status_code == 200  # the finished batch stays downloadable
    assert c.get("/status", params={"replacements_remaining": "x"}).status_code == 422
    # A caller without a budget (the classic flow) is not refused.
    assert run_batch(c, prompts("bb")).namelist() == ["bb.js"]


def test_replace_ignores_budget(started, client_for):
    srv = started(quality="poor", replace_after=0, replace_ignores_budget=True)
    c = client_for(srv)
    assert c.get("/status").json()["status"] == "replace"
    refused = c.post("/generate", json={"prompts": prompts("aa"), "seed": 1})
    assert refused.status_code == 409
    assert refused.json() == {"detail": "Cannot accept batch", "current_status": "replace"}
    assert srv.batches == []


# -- failures --------------------------------------------------------------------------------------

def test_fail_stems_go_into_failed_json(started, client_for):
    c = client_for(started(quality="poor", fail_stems="bb, cc"))
    zf = run_batch(c, prompts("aa", "bb", "cc"))
    assert sorted(zf.namelist()) == ["_failed.json", "aa.js"]
    reasons = failed(zf)
    assert set(reasons) == {"bb", "cc"} and all("fail_stems" in r for r in reasons.values())
    assert set(modules(zf)) == {"aa"}


def test_fail_rate_is_seeded_and_every_stem_appears_once(started, client_for):
    stems = [f"s{i}" for i in range(24)]
    outcomes = []
    for _ in range(2):
        srv = started(quality="poor", fail_rate=0.5, seed=11)
        zf = run_batch(client_for(srv), prompts(*stems), seed=3)
        good, bad = set(modules(zf)), set(failed(zf))
        assert good and bad and not good & bad and good | bad == set(stems)
        assert srv.generated == len(good) and srv.failed == len(bad)
        outcomes.append(bad)
    assert outcomes[0] == outcomes[1]
    everything = run_batch(client_for(started(quality="poor", fail_rate=1.0)), prompts("aa", "bb"))
    assert everything.namelist() == ["_failed.json"] and set(failed(everything)) == {"aa", "bb"}


def test_good_quality_fails_on_unreadable_images(started, client_for, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    c = client_for(started())
    zf = run_batch(c, [{"stem": "missing", "image_url": NOWHERE},
                       {"stem": "junk", "image_url": str(tmp_path / "junk.png")},
                       {"stem": "remote", "image_url": "http://example.com/x.png"},
                       {"stem": "ftp", "image_url": "ftp://127.0.0.1/x.png"},
                       {"stem": "ok", "image_url": str(solid_png(tmp_path, "r.png", RED))}])
    reasons = failed(zf)
    assert set(reasons) == {"missing", "junk", "remote", "ftp"}
    assert "decode" in reasons["junk"] and "loopback" in reasons["remote"] and "scheme" in reasons["ftp"]
    assert set(modules(zf)) == {"ok"}


# -- zip modes ---------------------------------------------------------------------------------------

STEMS = ("aa", "bb")


@pytest.mark.parametrize("mode", ["normal", "traversal", "absolute", "nested", "huge", "duplicate", "extra",
                                  "bomb", "corrupt", "empty"])
def test_zip_modes(started, client_for, mode):
    c = client_for(started(quality="poor", zip_mode=mode, fail_stems="cc"))
    assert c.post("/generate", json={"prompts": prompts(*STEMS, "cc"), "seed": 2}).status_code == 200
    wait_status(c, "complete")
    response = c.get("/results")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    data = response.content
    assert c.get("/results").content == data
    if mode == "corrupt":
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(data))
        return
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    infos = {info.filename: info for info in zf.infolist()}
    if mode == "empty":
        assert names == []
        return
    assert failed(zf) == {"cc": "injected failure (fail_stems)"}
    js = [n for n in names if n.endswith(".js")]
    expected = {
        "normal": ["aa.js", "bb.js"],
        "traversal": ["../../aa.js", "../../bb.js"],
        "absolute": ["/tmp/aa.js", "/tmp/bb.js"],
        "nested": ["sub/dir/aa.js", "sub/dir/bb.js"],
        "huge": ["aa.js", "bb.js"],
        "duplicate": ["first/aa.js", "second/aa.js", "bb.js"],
        "extra": ["aa.js", "bb.js", "zzz.js"],
        "bomb": ["aa.js", "bb.js"],
    }[mode]
    assert js == expected
    if mode == "extra":
        assert {"README.txt", "x.py"} <= set(names)
        assert len(names) == 6
    else:
        assert len(names) == len(js) + 1
    if mode == "huge":
        assert infos["aa.js"].file_size == HUGE_BYTES
        assert check_module(zf.read("aa.js").decode())[0]["rule"] == "FILE_SIZE_EXCEEDED"
        assert check_module(zf.read("bb.js").decode()) == []
    elif mode == "duplicate":
        first, second = zf.read("first/aa.js"), zf.read("second/aa.js")
        assert first != second
        assert check_module(first.decode()) == [] and check_module(second.decode()) == []
    elif mode == "bomb":
        bomb = infos["aa.js"]
        assert bomb.file_size == BOMB_BYTES and bomb.compress_size < BOMB_BYTES // 500
        assert len(data) < 1024 * 1024
        with zf.open(bomb) as member:  # it really inflates (read a little only)
            assert member.read(4096) == b" " * 4096
        assert check_module(zf.read("bb.js").decode()) == []
    else:
        for name in js:
            assert check_module(zf.read(name).decode()) == []
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())


# -- quality -----------------------------------------------------------------------------------------

def test_good_colours_follow_the_prompt_image_and_poor_ignore_it(started, client_for, tmp_path):
    red, blue = solid_png(tmp_path, "red.png", RED), solid_png(tmp_path, "blue.png", BLUE)
    items = [{"stem": "red", "image_url": str(red)}, {"stem": "blue", "image_url": red.as_uri()}]
    good = modules(run_batch(client_for(started(quality="good")), items))
    poor = modules(run_batch(client_for(started(quality="poor")), items))
    assert good["red"] != poor["red"] and good["blue"] != poor["blue"]
    # `blue` pointed at the red picture above; now give each stem the other picture.
    swapped = [{"stem": "red", "image_url": str(blue)}, {"stem": "blue", "image_url": blue.as_uri()}]
    good_swapped = modules(run_batch(client_for(started(quality="good")), swapped))
    poor_swapped = modules(run_batch(client_for(started(quality="poor")), swapped))
    assert poor_swapped == poor  # the image makes no difference to a poor generator
    for source in (good["red"], good["blue"]):
        r, g, b = module_features(source)["colors"][0]
        assert r > b + 100 and r > g + 100
    for source in good_swapped.values():
        r, g, b = module_features(source)["colors"][0]
        assert b > r + 100 and b > g + 100
    assert RED not in module_features(poor["red"])["colors"]


def test_good_layout_follows_the_foreground(tmp_path):
    tall = generate_module("tall", 1, "good", str(tall_red_on_white(tmp_path)))
    wide_pixels = bytearray(bytes(WHITE) * 3600)
    for y in range(20, 40):
        for x in range(2, 58):
            wide_pixels[(y * 60 + x) * 3:(y * 60 + x) * 3 + 3] = bytes(BLUE)
    wide = generate_module("wide", 1, "good", str(write_png(tmp_path / "wide.png", 60, 60, bytes(wide_pixels))))
    for source in (tall, wide):
        assert check_module(source) == []
        assert WHITE not in module_features(source)["colors"]  # the background is ignored
    (tall_w, tall_h, _), (wide_w, wide_h, _) = box_sizes(tall)[0], box_sizes(wide)[0]
    assert tall_h > tall_w and wide_w > wide_h
    assert module_features(tall)["colors"][0] == RED


def test_good_module_same_for_every_url_form_and_deterministic(tmp_path):
    path = solid_png(tmp_path, "p.png", BLUE)
    data_url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        http_url = f"http://127.0.0.1:{httpd.server_address[1]}/p.png"
        sources = {generate_module("abc", 4, "good", url) for url in (str(path), path.as_uri(), data_url, http_url)}
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(sources) == 1
    assert generate_module("abc", 5, "good", str(path)) != generate_module("abc", 4, "good", str(path))
    assert generate_module("abd", 4, "poor") != generate_module("abc", 4, "poor")
    assert generate_module("abc", 4, "poor") == generate_module("abc", 4, "poor")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


def test_poor_modules_pass_the_checks_for_many_stems():
    for index in range(60):
        source = generate_module(f"stem{index}", index, "poor")
        assert check_module(source) == []
        features = module_features(source)
        assert 2 <= features["primitive_count"] <= 4 and features["colors"]


# -- common knobs -----------------------------------------------------------------------------------

def test_common_fault_knobs_spare_health(started, client_for):
    c = client_for(started(request_fail_rate=1.0, fail_status=503))
    assert c.get("/health").json() == {"status": "ok"}
    assert c.get("/status").status_code == 503


# -- command line and Targon --------------------------------------------------------------------------

def test_command_line_generator():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "runner404.sim", "generator", "--port", "0", "--quality", "poor",
                             "--zip-mode", "nested", "--fail-stems", "bb"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "no output from the generator"
        line = proc.stdout.readline().strip()
        assert re.fullmatch(r"listening on http://127\.0\.0\.1:\d+", line), line
        url = line.removeprefix("listening on ")
        assert int(url.rsplit(":", 1)[1]) > 0
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get("/health").json() == {"status": "ok"}
            zf = run_batch(c, prompts("aa", "bb"))
            assert sorted(zf.namelist()) == ["_failed.json", "sub/dir/aa.js"]
    finally:
        stop_process(proc)


def _targon_server(image: str, args: list[str] | None = None, **options) -> GeneratorServer:
    factory = services.service_for_image(image)
    server = factory(args or [], {}, services.ServiceKnobs(options=options))
    assert isinstance(server, GeneratorServer)
    server.start()
    return server


def test_targon_registration_builds_working_generators(client_for):
    servers = [
        _targon_server("runner404-sim/generator:poor"),
        _targon_server("runner404-sim/generator:good"),
        _targon_server("runner404-sim/generator:good", ["--quality", "poor"]),
        _targon_server("runner404-sim/generator:latest", ["--quality=poor"]),
        _targon_server("runner404-sim/generator", generator_quality="poor", generator_zip_mode="nested",
                       generator_fail_stems="bb", generator_replace_after=1, generator_busy_for=0.0),
    ]
    try:
        assert [s.quality for s in servers] == ["poor", "good", "poor", "poor", "poor"]
        assert services.service_for_image("other/image:1") is services.DEFAULT.factory
        c = client_for(servers[0])
        zf = run_batch(c, prompts("aa"))  # poor: the image is never read
        assert modules(zf) == {"aa": generate_module("aa", 1, "poor")}
        configured = client_for(servers[4])
        zf = run_batch(configured, prompts("aa", "bb"))
        assert sorted(zf.namelist()) == ["_failed.json", "sub/dir/aa.js"]
        assert configured.get("/status", params={"replacements_remaining": 1}).json()["status"] == "replace"
    finally:
        for server in servers:
            server.stop()


def test_targon_health_delay_is_the_default_warmup(client_for):
    factory = services.service_for_image("runner404-sim/generator:poor")
    server = factory([], {}, services.ServiceKnobs(health_delay=5.0))
    server.start()
    try:
        c = client_for(server)
        assert c.get("/health").status_code == 200
        assert c.get("/status").json() == {"status": "warming_up"}
    finally:
        server.stop()
