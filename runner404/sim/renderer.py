"""A stand-in of `render-service-js`: /health, /ping, /render and /render/grid on loopback.

Speaks the wire protocol of protocols.md section 2 and draws cheap, deterministic pictures:
the background is `bg_color`; every `new THREE.<X>Geometry` of the module becomes one filled
rectangle, ellipse or triangle in the module's colours, placed in 3-D from a hash of the
source and projected with the real camera geometry (section 2.6), so each view differs and
the same source and query always give byte-identical PNGs (8-bit RGB, section 2.11).

Requests go through the same stages as the real service: the JSON body, then the static
checks of `runner404.sim.threejs` (422 `validation_failed`), then the post-validation
stand-in (422 `post_validation_failed`, EMPTY_SCENE), then the render. Only the render stage
takes a `capacity` slot (the real render pool) and waits `latency` + `view_latency` per view,
and only there are `fail_rate` / `drop_rate` faults injected (the real 500s are render
errors). `/health` and `/ping` always answer at once, never faulted. Render requests sent
while initialising (`init_delay`) wait until the service is ready.

Knobs beyond the common ones: `init_delay` (seconds of `/ping` = 204 after start),
`wrong_count_rate` (share of multi-view answers with one image left out; `count` then says
N-1), `bad_base64_rate` (share of multi-view answers with one image's base64 corrupted so
it does not decode), `view_latency` (seconds per rendered view). All faults are drawn from
the server's seeded random source.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from runner404 import png
from runner404.sim.http import Knobs, SimHandler, SimServer
from runner404.sim.threejs import POST, check_module, empty_scene_metrics, module_features

DEFAULT_THETAS = (24.0, 120.0, 216.0, 312.0)
DEFAULT_PHI = -15.0
DEFAULT_IMG_SIZE = 518
DEFAULT_CAM_RADIUS = 2.0
DEFAULT_CAM_FOV_DEG = 49.1
DEFAULT_GAP = 5
DEFAULT_BG = (0x80, 0x80, 0x80)
MAX_IMG_SIZE = 4096  # stand-in limit (the real service has none)
MAX_VIEWS = 64  # stand-in limit
MAX_SHAPES = 64  # primitives drawn per view
GRID_GUTTER = (0, 0, 0)

NAN = float("nan")


class RenderRequestError(ValueError):
    """A request the stand-in answers with 500 `{"error": message}`."""


# -- query parameters (JavaScript semantics of src/server.js) ------------------------------

_JS_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_JS_INT_PREFIX = re.compile(r"[+-]?\d+")
_JS_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_SPACE = " \t\n\r\v\f\u00a0\ufeff"


def js_number(text: str) -> float:
    """`Number(text)`: '' -> 0, '30' -> 30, '0x1e' -> 30, '30deg' -> NaN."""
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return float(int(text[2:], 16))
    if re.fullmatch(r"0[bB][01]+", text):
        return float(int(text[2:], 2))
    if re.fullmatch(r"0[oO][0-7]+", text):
        return float(int(text[2:], 8))
    if re.fullmatch(r"[+-]?Infinity", text):
        return -math.inf if text.startswith("-") else math.inf
    return NAN


def js_parse_int(text: str) -> float:
    m = _JS_INT_PREFIX.match(text.lstrip(_JS_SPACE))
    return float(int(m.group(0))) if m else NAN


def js_parse_float(text: str) -> float:
    m = _JS_FLOAT_PREFIX.match(text.lstrip(_JS_SPACE))
    if not m:
        return NAN
    value = m.group(0)
    if value.lstrip("+-") == "Infinity":
        return -math.inf if value.startswith("-") else math.inf
    return float(value)


def parse_colour(text: str | None) -> tuple[int, int, int]:
    """`new THREE.Color('#' + text)`: 3 or 6 hex digits, anything else warns and stays white."""
    if not text:
        return DEFAULT_BG
    if re.fullmatch(r"[0-9a-fA-F]{6}", text):
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    if re.fullmatch(r"[0-9a-fA-F]{3}", text):
        return int(text[0] * 2, 16), int(text[1] * 2, 16), int(text[2] * 2, 16)
    return 255, 255, 255


@dataclass(frozen=True)
class RenderOptions:
    thetas: tuple[float, ...] = DEFAULT_THETAS
    phis: tuple[float, ...] = (DEFAULT_PHI,) * 4  # one per theta; NaN where the query gave none
    img_size: int = DEFAULT_IMG_SIZE
    cam_radius: float = DEFAULT_CAM_RADIUS
    cam_fov_deg: float = DEFAULT_CAM_FOV_DEG
    gap: int = DEFAULT_GAP
    bg_color: tuple[int, int, int] = DEFAULT_BG
    lighting: str = "studio"

    @property
    def views(self) -> list[tuple[float, float]]:
        return list(zip(self.thetas, self.phis))


def parse_query(query: dict[str, str]) -> RenderOptions:
    """Options from the query, as `parseQuery` + `buildParams` of the real service.

    Empty values mean the default; `img_size`, `cam_radius` and `cam_fov_deg` fall back to the
    default when 0 or unparsable (`||`); a non-numeric angle, or a theta without a phi, gives
    a NaN camera, so that view shows only the background (as in the real renderer).
    Raises RenderRequestError for what the stand-in refuses: sizes above MAX_IMG_SIZE,
    negative sizes, more than MAX_VIEWS views, an unparsable or negative gap.
    """
    thetas = DEFAULT_THETAS
    if query.get("thetas"):
        thetas = tuple(js_number(part) for part in query["thetas"].split(","))
    if len(thetas) > MAX_VIEWS:
        raise RenderRequestError(f"{len(thetas)} views requested; the stand-in renders at most {MAX_VIEWS}")
    phis: tuple[float, ...] = (DEFAULT_PHI,) * len(thetas)
    if query.get("phis"):
        parts = [js_number(part) for part in query["phis"].split(",")]
        if len(parts) == 1:
            phis = (parts[0],) * len(thetas)
        else:
            phis = tuple(parts[i] if i < len(parts) else NAN for i in range(len(thetas)))
    size = js_parse_int(query["img_size"]) if query.get("img_size") else NAN
    img_size = int(size) if size == size and size != 0 else DEFAULT_IMG_SIZE
    if img_size < 0 or img_size > MAX_IMG_SIZE:
        raise RenderRequestError(f"img_size {img_size} outside the stand-in range 1..{MAX_IMG_SIZE}")
    radius = js_parse_float(query["cam_radius"]) if query.get("cam_radius") else NAN
    cam_radius = radius if radius == radius and radius != 0 else DEFAULT_CAM_RADIUS
    fov = js_parse_float(query["cam_fov_deg"]) if query.get("cam_fov_deg") else NAN
    cam_fov_deg = fov if fov == fov and fov != 0 else DEFAULT_CAM_FOV_DEG
    gap = DEFAULT_GAP
    if query.get("gap"):
        value = js_parse_int(query["gap"])
        if value != value or value < 0:
            raise RenderRequestError(f"invalid gap {query['gap']!r}")
        gap = int(value)
    lighting = "follow" if query.get("lighting") == "follow" else "studio"
    return RenderOptions(thetas, phis, img_size, cam_radius, cam_fov_deg, gap,
                         parse_colour(query.get("bg_color")), lighting)


# -- drawing --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    kind: str  # "rect", "ellipse" or "triangle"
    centre: tuple[float, float, float]
    half: tuple[float, float, float]  # half extents along x, y, z
    normal: tuple[float, float, float]
    colour: tuple[int, int, int]


_TRIANGLES = ("Cone", "Tetrahedron")
_RECTS = ("Box", "Plane", "Cylinder", "Extrude", "Shape", "Edges", "Wireframe")


def _kind(geometry: str) -> str:
    if geometry.startswith(_TRIANGLES):
        return "triangle"
    if geometry.startswith(_RECTS):
        return "rect"
    return "ellipse"


def _normalise(v: tuple[float, float, float]) -> tuple[float, float, float]:
    length = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return (0.0, 1.0, 0.0) if length < 1e-9 else (v[0] / length, v[1] / length, v[2] / length)


def _dot(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


def shapes_for(features: dict) -> list[Shape]:
    """One shape per primitive (at most MAX_SHAPES; one if the module draws without any)."""
    names = list(features["primitives"][:MAX_SHAPES])
    if not names and features.get("drawable_count", 1):
        names = ["BufferGeometry"]
    colours = features["colors"]
    digest = features["digest"]
    if not colours:
        d = bytes.fromhex(digest)
        colours = [(96 + d[0] % 128, 96 + d[1] % 128, 96 + d[2] % 128)]
    shapes = []
    for index, name in enumerate(names):
        h = hashlib.sha256(f"{digest}:{index}".encode()).digest()

        def unit(k: int) -> float:
            return h[k] / 255.0

        centre = ((unit(0) - 0.5) * 0.5, (unit(1) - 0.5) * 0.5, (unit(2) - 0.5) * 0.5)
        half = (0.05 + 0.15 * unit(3), 0.05 + 0.15 * unit(4), 0.05 + 0.15 * unit(5))
        normal = _normalise((unit(6) - 0.5, unit(7) * 0.8 + 0.2, unit(8) - 0.5))
        shapes.append(Shape(_kind(name), centre, half, normal, colours[index % len(colours)]))
    return shapes


_STUDIO_KEY = _normalise((2.0, 3.0, 2.0))
_STUDIO_FILL = _normalise((-2.0, 1.0, 1.0))


def _shade(colour: tuple[int, int, int], factor: float) -> bytes:
    return bytes(min(255, max(0, round(c * factor))) for c in colour)


def render_pixels(shapes: list[Shape], theta: float, phi: float, options: RenderOptions) -> bytearray:
    """RGB pixels (rows top to bottom) of one view."""
    size = options.img_size
    canvas = bytearray(bytes(options.bg_color) * (size * size))
    t, p, r = math.radians(theta), math.radians(phi), options.cam_radius
    eye = (r * math.cos(p) * math.sin(t), -r * math.sin(p), r * math.cos(p) * math.cos(t))
    if not all(math.isfinite(c) for c in eye) or not shapes:
        return canvas
    # Matrix4.lookAt with up = +Y: z points from the target to the eye.
    z = _normalise(eye)
    x = _cross((0.0, 1.0, 0.0), z)
    if _dot(x, x) < 1e-12:
        z = _normalise((z[0], z[1], z[2] + 1e-4))
        x = _cross((0.0, 1.0, 0.0), z)
    x = _normalise(x)
    y = _cross(z, x)
    focal = math.tan(math.radians(options.cam_fov_deg) / 2)
    if not math.isfinite(focal) or focal <= 0:
        return canvas
    light = _normalise((eye[0] + 1, eye[1] + 1, eye[2])) if options.lighting == "follow" else _STUDIO_KEY
    stride = size * 3
    placed = []
    for index, shape in enumerate(shapes):
        rel = (shape.centre[0] - eye[0], shape.centre[1] - eye[1], shape.centre[2] - eye[2])
        depth = -_dot(rel, z)
        if depth <= 0.01:
            continue
        scale = size / 2 / (depth * focal)
        cx = size / 2 + _dot(rel, x) * scale
        cy = size / 2 - _dot(rel, y) * scale
        sx, sy, sz = shape.half
        rx = (sx * abs(math.cos(t)) + sz * abs(math.sin(t))) * scale
        ry = (sy * abs(math.cos(p)) + max(sx, sz) * abs(math.sin(p))) * scale
        if options.lighting == "follow":
            bright = 0.45 + 0.65 * max(0.0, _dot(shape.normal, light))
        else:
            bright = (0.3 + 0.6 * max(0.0, _dot(shape.normal, _STUDIO_KEY))
                      + 0.2 * max(0.0, _dot(shape.normal, _STUDIO_FILL)))
        bright *= 0.85 + 0.15 * max(0.0, _dot(shape.normal, z))
        placed.append((-depth, index, shape.kind, cx, cy, rx, ry,
                       _shade(shape.colour, bright * 1.12), _shade(shape.colour, bright)))
    placed.sort()  # far first
    for _, _, kind, cx, cy, rx, ry, top, body in placed:
        if rx < 0.5 or ry < 0.5:
            continue
        y0, y1 = max(0, math.floor(cy - ry)), min(size, math.ceil(cy + ry))
        split = cy - ry + 0.7 * ry  # the upper 35 % is lit a little more
        for row in range(y0, y1):
            centre = row + 0.5
            if kind == "rect":
                half = rx
            elif kind == "ellipse":
                d = (centre - cy) / ry
                if d <= -1 or d >= 1:
                    continue
                half = rx * math.sqrt(1 - d * d)
            else:  # triangle, apex up
                half = rx * (centre - (cy - ry)) / (2 * ry)
            a, b = max(0, round(cx - half)), min(size, round(cx + half))
            if b <= a:
                continue
            offset = row * stride
            canvas[offset + a * 3:offset + b * 3] = (top if centre < split else body) * (b - a)
    return canvas


def render_views(source: str, options: RenderOptions, features: dict | None = None) -> list[bytes]:
    """PNG bytes of every view, in `thetas` order."""
    shapes = shapes_for(features or module_features(source))
    size = options.img_size
    return [png.encode(size, size, bytes(render_pixels(shapes, theta, phi, options)))
            for theta, phi in options.views]


def grid_size(count: int, img_size: int, gap: int) -> tuple[int, int, int]:
    """(columns, width, height) of the grid of `count` views."""
    cols = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    return cols, cols * img_size + (cols - 1) * gap, rows * img_size + (rows - 1) * gap


def render_grid(source: str, options: RenderOptions, features: dict | None = None) -> bytes:
    """One PNG: the views row-major in a ceil(sqrt(n))-column grid with black gutters."""
    shapes = shapes_for(features or module_features(source))
    size, gap = options.img_size, options.gap
    cols, width, height = grid_size(len(options.thetas), size, gap)
    canvas = bytearray(bytes(GRID_GUTTER) * (width * height))
    tile_stride, stride = size * 3, width * 3
    for index, (theta, phi) in enumerate(options.views):
        tile = render_pixels(shapes, theta, phi, options)
        left = (index % cols) * (size + gap) * 3
        top = (index // cols) * (size + gap)
        for row in range(size):
            offset = (top + row) * stride + left
            canvas[offset:offset + tile_stride] = tile[row * tile_stride:(row + 1) * tile_stride]
    return png.encode(width, height, bytes(canvas))


def corrupt_base64(text: str) -> str:
    """A string no base64 decoder accepts: half the text, 1 character past a multiple of 4, a '*'."""
    keep = 4 * (len(text) // 8) + 1
    return text[:keep // 2] + "*" + text[keep // 2:keep]


# -- the service ----------------------------------------------------------------------------

class RendererServer(SimServer):
    def __init__(self, address: tuple[str, int], knobs: Knobs | None = None, *, init_delay: float = 0.0,
                 wrong_count_rate: float = 0.0, bad_base64_rate: float = 0.0, view_latency: float = 0.0):
        super().__init__(address, RendererHandler, knobs)
        self.init_delay = init_delay
        self.ready_at = time.monotonic() + init_delay
        self.wrong_count_rate = wrong_count_rate
        self.bad_base64_rate = bad_base64_rate
        self.view_latency = view_latency
        self.views_rendered = 0

    @property
    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at

    def pick(self, count: int) -> int:
        with self.random_lock:
            return self.random.randrange(count)

    def count_views(self, count: int) -> None:
        with self.random_lock:
            self.views_rendered += count


class RendererHandler(SimHandler):
    server: RendererServer
    routes = {
        ("GET", "/health"): "health",
        ("GET", "/ping"): "ping",
        ("POST", "/render"): "render",
        ("POST", "/render/grid"): "grid",
    }

    def _dispatch(self) -> None:
        if not self._read_body():
            return
        name = self.route(self.command, self.path_only)
        if name is None:
            SimHandler._dispatch(self)  # 404 with the usual knobs
            return
        stats = self.server.stats
        stats.enter(self.path_only)
        started = time.monotonic()
        try:
            getattr(self, f"do_route_{name}")()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # the real service answers any internal error with 500
            self.close_connection = True
            self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            stats.leave(time.monotonic() - started)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch

    def do_route_health(self) -> None:
        self.send_json(200, {"status": "ok"})

    def do_route_ping(self) -> None:
        if self.server.ready:
            self.send(200, b"", "text/plain")
        else:
            self.send_response(204)
            self.end_headers()

    def do_route_render(self) -> None:
        self._render(grid=False)

    def do_route_grid(self) -> None:
        self._render(grid=True)

    def _source(self) -> str:
        try:
            raw = self.body()
        except ValueError as exc:  # too large: the body stays unread
            self.close_connection = True
            raise RenderRequestError(str(exc)) from None
        try:
            payload: Any = json.loads(raw.decode("utf-8", "replace"))
        except json.JSONDecodeError as exc:
            raise RenderRequestError(f"invalid JSON body: {exc}") from None
        if not isinstance(payload, dict):
            raise RenderRequestError('Provide "source" or "url" in the JSON body')
        if payload.get("source"):
            if not isinstance(payload["source"], str):
                raise RenderRequestError("source must be a string")
            return payload["source"]
        if payload.get("url"):
            raise RenderRequestError("url bodies are not supported by the stand-in")
        raise RenderRequestError('Provide "source" or "url" in the JSON body')

    def _render(self, grid: bool) -> None:
        server = self.server
        try:
            source = self._source()
        except RenderRequestError as exc:
            self.send_json(500, {"error": str(exc)})
            return
        wait = server.ready_at - time.monotonic()
        if wait > 0:  # the real service's pools are still starting
            time.sleep(wait)
        failures = check_module(source)
        if failures:
            if failures[0]["stage"] == POST:
                self.send_json(422, {"error": "post_validation_failed", "failures": failures,
                                     "metrics": empty_scene_metrics()})
            else:
                self.send_json(422, {"error": "validation_failed", "failures": failures})
            return
        try:
            options = parse_query(self.query)
        except RenderRequestError as exc:
            self.send_json(500, {"error": str(exc)})
            return
        if server.slots:
            server.slots.acquire()
        try:
            server.knobs.delay(server)
            if server.view_latency:
                time.sleep(server.view_latency * len(options.thetas))
            if server.chance(server.knobs.drop_rate):
                self.close_connection = True
                self.connection.close()
                return
            if server.chance(server.knobs.fail_rate):
                self.send_json(server.knobs.fail_status, {"error": "injected failure"})
                return
            features = module_features(source)
            server.count_views(len(options.thetas))
            if grid:
                self.send(200, render_grid(source, options, features), "image/png")
                return
            images = render_views(source, options, features)
        finally:
            if server.slots:
                server.slots.release()
        if len(images) == 1:
            self.send(200, images[0], "image/png")
            return
        encoded = [base64.b64encode(image).decode("ascii") for image in images]
        if server.chance(server.wrong_count_rate):
            del encoded[server.pick(len(encoded))]
        if server.chance(server.bad_base64_rate):
            at = server.pick(len(encoded))
            encoded[at] = corrupt_base64(encoded[at])
        self.send_json(200, {"images": encoded, "count": len(encoded), "img_size": options.img_size})


# -- entry points ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init-delay", type=float, default=0.0, help="seconds /ping answers 204 after start")
    parser.add_argument("--view-latency", type=float, default=0.0, help="seconds added per rendered view")
    parser.add_argument("--wrong-count-rate", type=float, default=0.0,
                        help="share of multi-view answers with one image missing")
    parser.add_argument("--bad-base64-rate", type=float, default=0.0,
                        help="share of multi-view answers with one corrupt base64 image")


def create_server(host: str, port: int, args: argparse.Namespace) -> RendererServer:
    return RendererServer((host, port), Knobs.from_args(args), init_delay=args.init_delay,
                          wrong_count_rate=args.wrong_count_rate, bad_base64_rate=args.bad_base64_rate,
                          view_latency=args.view_latency)


def start_renderer(host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0, capacity: int = 0,
                   fail_rate: float = 0.0, fail_status: int = 503, drop_rate: float = 0.0, seed: int = 0,
                   init_delay: float = 0.0, view_latency: float = 0.0, wrong_count_rate: float = 0.0,
                   bad_base64_rate: float = 0.0, stall_rate: float = 0.0, stall: float = 0.0) -> RendererServer:
    """A renderer serving in a background thread; `.url`, `.stats`, `.stop()`."""
    knobs = Knobs(latency, capacity, fail_rate, fail_status, drop_rate, seed, stall_rate, stall)
    server = RendererServer((host, port), knobs, init_delay=init_delay, wrong_count_rate=wrong_count_rate,
                            bad_base64_rate=bad_base64_rate, view_latency=view_latency)
    server.start()
    return server
