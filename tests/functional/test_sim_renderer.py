"""The render-service stand-in over loopback HTTP: runner404.sim.renderer."""

from __future__ import annotations

import base64
import binascii
import os
import selectors
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import stop_process
from standin_fixtures import standin_fixtures

from runner404 import png
from runner404.sim.renderer import start_renderer
from runner404.sim.threejs import MAX_FILE_BYTES

SOURCE = ("export default function generate(THREE) { const g = new THREE.Group(); "
          "const m = new THREE.Mesh(new THREE.BoxGeometry(0.5,0.5,0.5), "
          "new THREE.MeshStandardMaterial({color: 0xcc3322})); g.add(m); return g; }")
OTHER = ("export default function generate(THREE) { const g = new THREE.Group();\n"
         "  g.add(new THREE.Mesh(new THREE.SphereGeometry(0.3), new THREE.MeshBasicMaterial({color: '#22aa44'})));\n"
         "  g.add(new THREE.Mesh(new THREE.ConeGeometry(0.2, 0.4), new THREE.MeshBasicMaterial({color: 0x3344ee})));\n"
         "  return g; }")
GRAY = (0x80, 0x80, 0x80)
SMALL = {"img_size": "64"}


server, client, started = standin_fixtures(start_renderer)


def render(client: httpx.Client, source: str = SOURCE, path: str = "/render", **query: str) -> httpx.Response:
    return client.post(path, json={"source": source}, params=query)


def decode_views(response: httpx.Response) -> list[png.Image]:
    assert response.status_code == 200, response.text
    body = response.json()
    return [png.decode(base64.b64decode(item, validate=True)) for item in body["images"]]


def colours(image: png.Image) -> set[tuple[int, ...]]:
    step = image.channels
    return {tuple(image.pixels[i:i + step]) for i in range(0, len(image.pixels), step * 7)}


# -- health and readiness -------------------------------------------------------------------

def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ping_is_200_when_ready(client):
    assert client.get("/ping").status_code == 200


def test_unknown_path_is_404(client):
    response = client.get("/render")
    assert response.status_code == 404 and response.json() == {"error": "not found"}


def test_ping_204_while_initialising_then_200(started):
    srv = started(init_delay=0.5)
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        assert c.get("/health").status_code == 200  # early, as the real service
        first = c.get("/ping")
        assert first.status_code == 204 and first.content == b""
        deadline = time.monotonic() + 5
        while (status := c.get("/ping").status_code) == 204 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200


def test_render_during_initialisation_waits_until_ready(started):
    srv = started(init_delay=0.3)
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        begin = time.monotonic()
        response = render(c, thetas="0", **SMALL)
        assert response.status_code == 200
        assert time.monotonic() - begin >= 0.2


# -- views ----------------------------------------------------------------------------------

def test_single_view_is_raw_png_of_requested_size(client):
    response = render(client, thetas="30", phis="0", img_size="96")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content)
    image = png.decode(response.content)
    assert (image.width, image.height, image.channels) == (96, 96, 3)
    assert image.pixel(0, 0) == GRAY  # default bg_color 808080
    assert len(colours(image)) > 1  # the object is drawn


def test_bg_color(client):
    image = png.decode(render(client, thetas="0", bg_color="ffffff", **SMALL).content)
    assert image.pixel(0, 0) == (255, 255, 255)
    image = png.decode(render(client, thetas="0", bg_color="102030", **SMALL).content)
    assert image.pixel(63, 63) == (0x10, 0x20, 0x30)


def test_module_colour_is_used(client):
    image = png.decode(render(client, thetas="30", phis="0", img_size="128").content)
    assert any(r > g + 60 and r > b + 60 for r, g, b in colours(image))  # 0xcc3322, shaded


def test_multi_view_json(client):
    response = render(client, thetas="30,330,0,0", phis="0,0,15,-30", img_size="48")
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["count"] == 4 and body["img_size"] == 48 and len(body["images"]) == 4
    images = decode_views(response)
    assert all((i.width, i.height) == (48, 48) for i in images)
    assert len({i.pixels for i in images}) == 4  # every view differs


def test_default_query_renders_four_518_views(client):
    body = render(client).json()
    assert body["count"] == 4 and body["img_size"] == 518
    assert all(png.read_header(base64.b64decode(item)) == (518, 518) for item in body["images"])


def test_phis_are_pairwise_and_in_theta_order(client):
    thetas, phis = ["30", "330", "0", "0", "90"], ["0", "0", "15", "-30", "-90"]
    response = render(client, thetas=",".join(thetas), phis=",".join(phis), **SMALL)
    encoded = response.json()["images"]
    for theta, phi, item in zip(thetas, phis, encoded):
        assert base64.b64decode(item) == render(client, thetas=theta, phis=phi, **SMALL).content


def test_single_phi_applies_to_every_theta(client):
    one = render(client, thetas="0,90,180", phis="-30", **SMALL).json()
    each = render(client, thetas="0,90,180", phis="-30,-30,-30", **SMALL).json()
    assert one == each


def test_integer_and_float_angles_agree(client):
    ints = render(client, thetas="30,330", phis="0,-30", **SMALL).json()
    floats = render(client, thetas="30.0,330.0", phis="0.0,-30.0", **SMALL).json()
    assert ints == floats


def test_unparsable_angle_shows_only_background(client):
    image = png.decode(render(client, thetas="north", **SMALL).content)
    assert colours(image) == {GRAY}


def test_lighting_changes_shading(client):
    studio = render(client, thetas="30", phis="0", **SMALL).content
    follow = render(client, thetas="30", phis="0", lighting="follow", **SMALL).content
    assert studio != follow


def test_same_source_is_byte_identical_different_sources_differ(client):
    query = {"thetas": "24,120", "phis": "-15", "img_size": "80"}
    first, again = render(client, **query).json(), render(client, **query).json()
    assert first == again
    other = render(client, OTHER, **query).json()
    for mine, theirs in zip(decode_views(render(client, **query)), decode_views(render(client, OTHER, **query))):
        assert mine.pixels != theirs.pixels
    assert first["images"] != other["images"]


def test_img_size_above_stand_in_limit_is_500(client):
    response = render(client, thetas="0", img_size="5000")
    assert response.status_code == 500 and "img_size" in response.json()["error"]


# -- grid -----------------------------------------------------------------------------------

def test_grid_default_is_1041_square(client):
    response = client.post("/render/grid", json={"source": SOURCE})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content)
    image = png.decode(response.content)
    assert (image.width, image.height) == (1041, 1041)
    assert image.pixel(0, 0) == GRAY and image.pixel(1040, 1040) == GRAY
    for x, y in ((518, 10), (522, 700), (10, 520), (700, 518)):
        assert image.pixel(x, y) == (0, 0, 0)  # 5-px black gutters at 518..522


def test_grid_layout_matches_single_views(client):
    query = {"thetas": "0,90,180", "phis": "-15", "img_size": "32", "gap": "2"}
    image = png.decode(render(client, path="/render/grid", **query).content)
    assert (image.width, image.height) == (66, 66)  # 2 columns, 2 rows
    assert image.pixel(50, 50) == (0, 0, 0)  # the empty fourth cell stays black
    for index, theta in enumerate(("0", "90", "180")):
        tile = png.decode(render(client, thetas=theta, phis="-15", img_size="32").content)
        left, top = (index % 2) * 34, (index // 2) * 34
        for row in range(32):
            at = ((top + row) * 66 + left) * 3
            assert image.pixels[at:at + 96] == tile.pixels[row * 96:(row + 1) * 96]


# -- validation answers ---------------------------------------------------------------------

def module(body: str) -> str:
    return ("export default function generate(THREE) {\n" + body +
            "\n  return new THREE.Mesh(new THREE.BoxGeometry(0.2, 0.2, 0.2));\n}\n")


@pytest.mark.parametrize("source, rule, detail", [
    (module("") + "//" + "x" * MAX_FILE_BYTES, "FILE_SIZE_EXCEEDED", "bytes (limit 1048576)"),
    ("function generate(THREE) { return new THREE.Mesh(); }", "MISSING_DEFAULT_EXPORT", "no `export default` found"),
    ("import * as THREE from 'three';\n" + module(""), "FORBIDDEN_IDENTIFIER", "import statement at line 1"),
    (module("  const t = require('three');"), "IDENTIFIER_NOT_ALLOWED", "require at line 2"),
    (module("  const s = 'open;"), "PARSE_ERROR", "Unterminated string constant."),
] + [
    (module(f"  const x = {name};"), "FORBIDDEN_IDENTIFIER", f"{name} at line 2")
    for name in ("Math.random", "fetch", "XMLHttpRequest", "WebSocket", "document", "window", "eval", "Function",
                 "setTimeout", "Date", "performance", "crypto", "process", "globalThis")
], ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None)
def test_static_failures_are_422(client, source, rule, detail):
    for path in ("/render", "/render/grid"):
        response = render(client, source, path=path, thetas="0", **SMALL)
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "validation_failed"
        assert [f["rule"] for f in body["failures"]] == [rule]
        failure = body["failures"][0]
        assert failure["stage"] == "static_analysis" and detail in failure["detail"]


def test_empty_scene_is_post_validation_422(client):
    source = "export default function generate(THREE) { const g = new THREE.Group(); return g; }"
    response = render(client, source)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "post_validation_failed"
    assert body["failures"] == [{"stage": "post_validation", "rule": "EMPTY_SCENE", "detail": "bounding box is empty"}]
    assert set(body["metrics"]) == {"vertices", "drawCalls", "depth", "instances", "textureBytes", "bbox"}


@pytest.mark.parametrize("content, fragment", [
    (b"{not json", "invalid JSON"),
    (b'{"src": "x"}', 'Provide "source" or "url"'),
    (b'{"source": ""}', 'Provide "source" or "url"'),
    (b"[1, 2]", 'Provide "source" or "url"'),
    (b'{"url": "http://127.0.0.1:9/a.js"}', "url bodies are not supported"),
])
def test_bad_bodies_are_500(client, content, fragment):
    response = client.post("/render", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 500
    assert fragment in response.json()["error"]


# -- knobs ----------------------------------------------------------------------------------

def test_wrong_count_knob(started):
    srv = started(wrong_count_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        body = render(c, thetas="0,90,180,270", **SMALL).json()
        assert body["count"] == 3 and len(body["images"]) == 3
        assert render(c, thetas="0", **SMALL).headers["content-type"] == "image/png"  # single views untouched


def test_bad_base64_knob(started):
    srv = started(bad_base64_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        body = render(c, thetas="0,90,180,270", **SMALL).json()
    assert body["count"] == 4
    bad = 0
    for item in body["images"]:
        try:
            png.decode(base64.b64decode(item))
        except (binascii.Error, png.PngError):
            bad += 1
            with pytest.raises(binascii.Error):
                base64.b64decode(item, validate=True)
    assert bad == 1


def test_fail_rate_knob_spares_health(started):
    srv = started(fail_rate=1.0, fail_status=502)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        response = render(c, thetas="0", **SMALL)
        assert response.status_code == 502 and response.json() == {"error": "injected failure"}
        assert c.get("/health").status_code == 200 and c.get("/ping").status_code == 200
        assert render(c, "function f() {}").status_code == 422  # validation answers before the render stage


def test_faults_are_seeded(started):
    def statuses(seed: int) -> list[int]:
        srv = started(fail_rate=0.5, seed=seed)
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            return [render(c, thetas="0", img_size="16").status_code for _ in range(12)]

    first = statuses(7)
    assert first == statuses(7)
    assert set(first) == {200, 503}


def test_capacity_serialises_renders_but_not_validation(started):
    srv = started(capacity=1, latency=0.3)
    results: list[float] = []

    def one() -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert render(c, thetas="0", img_size="16").status_code == 200
            results.append(time.monotonic())

    begin = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert render(c, "function f() {}").status_code == 422
        rejected_at = time.monotonic()
    for thread in threads:
        thread.join(5)
    assert len(results) == 2 and max(results) - begin >= 0.55
    assert rejected_at < max(results)  # validation did not wait for a render slot


# -- command line ---------------------------------------------------------------------------

def test_command_line_renderer():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "runner404.sim", "renderer", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "no output from the renderer"
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        port = int(url.rsplit(":", 1)[1])
        assert port > 0
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get("/health").json() == {"status": "ok"}
            assert c.get("/ping").status_code == 200
            assert png.decode(render(c, thetas="0", **SMALL).content).width == 64
    finally:
        stop_process(proc)
