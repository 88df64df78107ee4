"""A stand-in miner generator service: /health, /status, /generate and /results on loopback.

Speaks the generator container contract of protocols.md section 1 and produces cheap,
deterministic three.js modules (section 3) that pass `runner404.sim.threejs.check_module`:
`export default function generate(THREE)` returning a `THREE.Group` of a few Mesh primitives
with `MeshStandardMaterial` hex colours, all inside the unit cube, no randomness.

- `GET /health` -> 200 `{"status":"ok"}` as soon as the server listens (never faulted).
- `GET /status[?replacements_remaining=N]` -> `{"status", "progress", "total", "payload"}`
  without null fields: `warming_up` for `warmup` s, then `generating` (someone else's batch)
  for `busy_for` s, then `ready`; `generating` with progress/total while our batch runs;
  `complete` when it is done; `replace` once `replace_after` batches have completed and the
  caller's `replacements_remaining` > 0 (a missing parameter counts as 0, as in the
  reference) or always with `replace_ignores_budget`.
- `POST /generate` `{"prompts":[{"stem","image_url"}], "seed": int}`: a malformed body, a stem
  not matching `^[a-z0-9]+$`, duplicate stems or an empty prompt list -> 422 (body checks come
  first, as in FastAPI); accepted in `ready`/`complete` -> 200 `{"accepted": N}`; the same set
  of stems again while `generating`/`complete` -> 200 with the same count (nothing restarts);
  anything else -> 409 `{"detail":"Cannot accept batch","current_status":"<status>"}`. The
  status judged here is the one a caller without `replacements_remaining` sees (unless
  `replace_ignores_budget`), so the classic flow, which never sends it, is never refused.
- `GET /results` while the last batch is complete -> a deflated ZIP (`application/zip`,
  chunked, no Content-Length), byte-identical until the next accepted batch: one `{stem}.js`
  per success and `_failed.json` `{stem: reason}` when some failed; else 409
  `{"detail": "results not available"}`. (Served also while `replace` is reported.)

Quality: `good` reads the prompt image (local path, `file://`, `data:image/png;base64,...`, or
http(s) on loopback, 10 s timeout) and builds the object from its 2-3 dominant non-background
colours (near-white and light-gray pixels are background) and from the foreground's bounding
box (proportions) and fill ratio (box, cylinder or cone body); an unreadable image fails that
prompt. `poor` ignores the image: colours from a hash of the stem, shapes from a hash of the
stem and seed. The same (stem, seed, quality, image) always gives the same module.

Knobs beyond the common ones (`python -m runner404.sim generator --help`): `quality`,
`warmup`, `prompt_latency` (s per prompt), `gpu_capacity` (prompts generated in parallel),
`fail_rate` (share of prompts failing into `_failed.json`, drawn from a hash of the common
`seed` knob, the batch seed and the stem; the flag is `--prompt-fail-rate` because
`--fail-rate` is the common request-fault knob), `fail_stems`, `replace_after`,
`replace_ignores_budget`, `busy_for`, `zip_mode` (see `ZIP_MODES`). The common knobs
(latency, capacity, fail_rate/fail_status, drop_rate, stall) apply to /status, /generate
and /results.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import colorsys
import hashlib
import io
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner404 import png
from runner404.sim.http import Knobs, SimHandler, SimServer, is_loopback

QUALITIES = ("good", "poor")
ZIP_MODES = ("normal", "traversal", "absolute", "nested", "huge", "duplicate", "extra", "bomb", "corrupt",
             "empty")
STEM_PATTERN = "^[a-z0-9]+$"
_STEM = re.compile(r"[a-z0-9]+")  # fullmatch: `$` of Python's re would allow a trailing newline
DEFAULT_GPU_CAPACITY = 4  # production pods have 4 GPUs
FETCH_TIMEOUT = 10.0
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 16_000_000
RESULTS_CHUNK = 64 * 1024  # as the reference streams
HUGE_BYTES = 2 * 1024 * 1024
BOMB_BYTES = 200 * 1024 * 1024
BOMB_CHUNK = 1024 * 1024
BUSY_TOTAL = 32  # the size of "someone else's" batch during busy_for
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
HALF = 0.48  # every part stays within [-HALF, HALF] (the unit cube with a margin for rounding)

Colour = tuple[int, int, int]


class PromptFailure(Exception):
    """One prompt could not be generated; the message goes into `_failed.json`."""


# -- prompt images ----------------------------------------------------------------------------

def read_image_bytes(url: str, timeout: float = FETCH_TIMEOUT) -> bytes:
    """The bytes behind a prompt's image_url: a local path, `file://`, `data:` or loopback http(s)."""
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        if not comma:
            raise PromptFailure("malformed data: URL (no comma)")
        if header.endswith(";base64"):
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PromptFailure(f"malformed base64 in data: URL ({exc})") from None
        return urllib.parse.unquote_to_bytes(data)
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not is_loopback(parts.hostname):
            raise PromptFailure(f"the stand-in fetches loopback URLs only, not {parts.hostname}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
                data = response.read(MAX_IMAGE_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PromptFailure(f"cannot download prompt image: {exc}") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise PromptFailure(f"prompt image over {MAX_IMAGE_BYTES} bytes")
        return data
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise PromptFailure(f"file URL on another host: {parts.netloc}")
        path = Path(urllib.request.url2pathname(parts.path))
    elif scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        path = Path(url)
    else:
        raise PromptFailure(f"unsupported image URL scheme: {scheme}")
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise PromptFailure(f"prompt image over {MAX_IMAGE_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise PromptFailure(f"cannot read prompt image {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ImageSummary:
    """What a `good` generator takes from a prompt image."""

    colours: tuple[Colour, ...]  # 2-3 dominant foreground colours, most frequent first
    bbox: tuple[float, float, float, float]  # foreground x0, y0, x1, y1 as fractions of the image
    aspect: float  # foreground width / height, in pixels
    fill: float  # share of the bounding box that is foreground


def is_background(r: int, g: int, b: int, a: int = 255) -> bool:
    """Transparent, or near-white / light-gray (nearly achromatic and not dark)."""
    return a < 128 or (max(r, g, b) - min(r, g, b) <= 24 and min(r, g, b) >= 96)


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(min(255, max(0, round(c * factor))) for c in colour)  # type: ignore[return-value]


def summarise(image: png.Image) -> ImageSummary:
    """Dominant colours (quantised to 8 levels per channel) and layout of the foreground."""
    step = max(1, max(image.width, image.height) // 128)
    channels, pixels, width = image.channels, image.pixels, image.width
    samples = []
    for y in range(0, image.height, step):
        row = y * width * channels
        for x in range(0, width, step):
            at = row + x * channels
            samples.append((x, y, pixels[at], pixels[at + 1], pixels[at + 2],
                            pixels[at + 3] if channels == 4 else 255))
    foreground = [s for s in samples if not is_background(*s[2:])]
    if not foreground:  # nothing but background: take the whole picture
        foreground = samples
    buckets: dict[tuple[int, int, int], list[int]] = {}
    for _, _, r, g, b, _ in foreground:
        entry = buckets.setdefault((r >> 5, g >> 5, b >> 5), [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += r
        entry[2] += g
        entry[3] += b
    ranked = sorted(buckets.items(), key=lambda item: (-item[1][0], item[0]))
    colours: list[Colour] = []
    for _, (count, r, g, b) in ranked:
        if len(colours) == 3 or (colours and count < 0.08 * len(foreground)):
            break
        colours.append((round(r / count), round(g / count), round(b / count)))
    if len(colours) < 2:  # one colour: add a shade of it for the second part
        colours.append(_shade(colours[0], 0.6 if sum(colours[0]) > 150 else 1.8))
    xs = [s[0] for s in foreground]
    ys = [s[1] for s in foreground]
    x0, x1, y0, y1 = min(xs), max(xs) + step, min(ys), max(ys) + step
    cells = ((x1 - x0) // step) * ((y1 - y0) // step)
    x1, y1 = min(x1, image.width), min(y1, image.height)
    return ImageSummary(
        colours=tuple(colours),
        bbox=(x0 / image.width, y0 / image.height, x1 / image.width, y1 / image.height),
        aspect=(x1 - x0) / max(1, y1 - y0),
        fill=min(1.0, len(foreground) / max(1, cells)),
    )


def load_summary(url: str) -> ImageSummary:
    data = read_image_bytes(url)
    try:
        image = png.decode(data, max_pixels=MAX_IMAGE_PIXELS)
    except png.PngError as exc:
        raise PromptFailure(f"cannot decode prompt image: {exc}") from None
    return summarise(image)


# -- modules -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """One Mesh: a geometry expression, its colour, centre and half extents (for the cube check)."""

    geometry: str
    colour: Colour
    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    roughness: float = 0.6
    metalness: float = 0.05


def _f(value: float) -> str:
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _geometry(kind: str, a: float, b: float = 0.0, c: float = 0.0) -> tuple[str, tuple[float, float, float]]:
    """(JS expression, half extents) of a primitive; a, b, c are the sizes the kind needs."""
    if kind == "box":
        return f"new THREE.BoxGeometry({_f(a)}, {_f(b)}, {_f(c)})", (a / 2, b / 2, c / 2)
    if kind == "sphere":
        return f"new THREE.SphereGeometry({_f(a)}, 24, 16)", (a, a, a)
    if kind == "cylinder":
        return f"new THREE.CylinderGeometry({_f(a * 0.9)}, {_f(a)}, {_f(b)}, 24)", (a, b / 2, a)
    if kind == "cone":
        return f"new THREE.ConeGeometry({_f(a)}, {_f(b)}, 24)", (a, b / 2, a)
    if kind == "octahedron":
        return f"new THREE.OctahedronGeometry({_f(a)})", (a, a, a)
    raise ValueError(kind)


def _unit(digest: bytes, index: int) -> float:
    return digest[index % len(digest)] / 255.0


def good_parts(summary: ImageSummary, stem: str, seed: int) -> list[Part]:
    """A body with the foreground's proportions, a top piece and a front accent."""
    h = hashlib.sha256(f"good:{stem}:{seed}".encode()).digest()
    size = 0.8
    aspect = min(4.0, max(0.25, summary.aspect))
    width, height = (size, max(0.2, size / aspect)) if aspect >= 1 else (max(0.2, size * aspect), size)
    depth = min(0.6, max(0.15, min(width, height) * 0.7))
    body_h = height * 0.72
    body_y = -height / 2 + body_h / 2
    if summary.fill >= 0.88:
        kind, (geometry, half) = "box", _geometry("box", width, body_h, depth)
    elif summary.fill >= 0.65:
        kind, (geometry, half) = "cylinder", _geometry("cylinder", width / 2, body_h)
    else:
        kind, (geometry, half) = "cone", _geometry("cone", width / 2, body_h)
    roughness = 0.35 + 0.4 * _unit(h, 0)
    colours = summary.colours
    parts = [Part(geometry, colours[0], (0.0, body_y, 0.0), half, roughness)]
    radius = min((height - body_h) / 2, width / 2)
    top, top_half = _geometry("sphere", radius)
    parts.append(Part(top, colours[1], (0.0, -height / 2 + body_h + radius, 0.0), top_half, roughness))
    accent_colour = colours[2] if len(colours) > 2 else _shade(colours[1], 0.75)
    front = half[2] * (0.5 if kind == "cone" else 1.0)
    accent, accent_half = _geometry("box", width * 0.6 * (0.5 if kind == "cone" else 1.0), body_h * 0.15, 0.04)
    parts.append(Part(accent, accent_colour, (0.0, body_y, front + 0.02), accent_half, roughness, 0.3))
    return parts


def poor_colours(stem: str) -> list[Colour]:
    h = hashlib.sha256(f"poor-colours:{stem}".encode()).digest()
    colours = []
    for k in range(3):
        r, g, b = colorsys.hsv_to_rgb(_unit(h, 3 * k), 0.55 + 0.35 * _unit(h, 3 * k + 1),
                                      0.55 + 0.35 * _unit(h, 3 * k + 2))
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def poor_parts(stem: str, seed: int) -> list[Part]:
    """Two to four primitives placed from a hash; colours from the stem alone."""
    colours = poor_colours(stem)
    h0 = hashlib.sha256(f"poor:{stem}".encode()).digest()
    kinds = ("box", "sphere", "cone", "cylinder", "octahedron")
    parts = []
    for index in range(2 + h0[0] % 3):
        h = hashlib.sha256(f"poor:{stem}:{seed}:{index}".encode()).digest()
        kind = kinds[(h0[1 + index]) % len(kinds)]
        a, b, c = 0.08 + 0.14 * _unit(h, 0), 0.16 + 0.3 * _unit(h, 1), 0.16 + 0.3 * _unit(h, 2)
        geometry, half = _geometry(kind, a * 2 if kind == "box" else a, b, c)
        x, y, z = ((_unit(h, 3 + k) * 2 - 1) * (HALF - half[k]) for k in range(3))
        parts.append(Part(geometry, colours[index % 3], (x, y, z), half, 0.3 + 0.5 * _unit(h, 6)))
    return parts


def render_module(parts: list[Part], stem: str, seed: int, quality: str) -> str:
    for part in parts:
        for centre, half in zip(part.centre, part.half):
            if abs(centre) + half > 0.5:  # pragma: no cover - a layout bug
                raise AssertionError(f"part outside the unit cube: {part}")
    lines = [
        f"// Generated by the runner404 stand-in generator: stem {stem}, seed {seed}, quality {quality}.",
        "// A few primitives inside the unit cube, centred at the origin, facing +Z.",
        "export default function generate(THREE) {",
        "  const group = new THREE.Group();",
    ]
    for index, part in enumerate(parts, 1):
        colour = "0x%02x%02x%02x" % part.colour
        x, y, z = (_f(v) for v in part.centre)
        lines += [
            "",
            f"  const part{index} = new THREE.Mesh(",
            f"    {part.geometry},",
            f"    new THREE.MeshStandardMaterial({{ color: {colour}, roughness: {part.roughness:.2f}, "
            f"metalness: {part.metalness:.2f} }})",
            "  );",
            f"  part{index}.position.set({x}, {y}, {z});",
            f"  group.add(part{index});",
        ]
    lines += ["", "  return group;", "}", ""]
    return "\n".join(lines)


def generate_module(stem: str, seed: int, quality: str, image_url: str = "") -> str:
    """The module for one prompt; raises PromptFailure when a `good` image cannot be read."""
    if quality == "good":
        return render_module(good_parts(load_summary(image_url), stem, seed), stem, seed, quality)
    return render_module(poor_parts(stem, seed), stem, seed, quality)


# -- archives ----------------------------------------------------------------------------------

def _info(name: str, size: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    info.file_size = size
    return info


def _padded(source: str, size: int) -> bytes:
    """`source` followed by a block comment of hash-derived text up to `size` bytes."""
    head = source.encode() + b"/*\n"
    filler = bytearray()
    block = hashlib.sha256(source.encode()).digest()
    need = size - len(head) - 3
    while len(filler) < need:
        block = hashlib.sha256(block).digest()
        filler += base64.b64encode(block)
    return head + bytes(filler[:need]) + b"\n*/"


def build_archive(modules: dict[str, str], failures: dict[str, str], mode: str = "normal") -> bytes:
    """The results ZIP for `modules` ({stem: source}) and `failures` ({stem: reason})."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if mode != "empty":
            stems = sorted(modules)
            special = stems[0] if stems else None
            for stem in stems:
                source = modules[stem]
                if mode == "traversal":
                    archive.writestr(_info(f"../../{stem}.js"), source)
                elif mode == "absolute":
                    archive.writestr(_info(f"/tmp/{stem}.js"), source)
                elif mode == "nested":
                    archive.writestr(_info(f"sub/dir/{stem}.js"), source)
                elif mode == "huge" and stem == special:
                    archive.writestr(_info(f"{stem}.js"), _padded(source, HUGE_BYTES))
                elif mode == "duplicate" and stem == special:
                    archive.writestr(_info(f"first/{stem}.js"), source)
                    archive.writestr(_info(f"second/{stem}.js"), "// the second copy\n" + source)
                elif mode == "bomb" and stem == special:
                    with archive.open(_info(f"{stem}.js", BOMB_BYTES), "w") as member:
                        chunk = b" " * BOMB_CHUNK
                        for _ in range(BOMB_BYTES // BOMB_CHUNK):
                            member.write(chunk)
                else:
                    archive.writestr(_info(f"{stem}.js"), source)
            if mode == "extra":
                archive.writestr(_info("README.txt"), "Generated by the runner404 stand-in generator.\n")
                archive.writestr(_info("x.py"), "import os\nos.system('echo not for you')\n")
                archive.writestr(_info("zzz.js"), generate_module("zzz", 0, "poor"))
            if failures:
                archive.writestr(_info("_failed.json"), json.dumps(failures, indent=2, sort_keys=True) + "\n")
    data = buffer.getvalue()
    if mode == "corrupt":
        return data[:max(1, len(data) // 2)]
    return data


# -- the service -------------------------------------------------------------------------------

@dataclass
class Batch:
    prompts: list[tuple[str, str]]  # (stem, image_url)
    seed: int
    stems: frozenset[str] = frozenset()
    done: int = 0
    modules: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    archive: bytes | None = None  # set when complete

    @property
    def total(self) -> int:
        return len(self.prompts)


def _fraction(*parts: Any) -> float:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


class GeneratorServer(SimServer):
    def __init__(self, address: tuple[str, int], knobs: Knobs | None = None, *, quality: str = "good",
                 warmup: float = 0.0, prompt_latency: float = 0.0, gpu_capacity: int = DEFAULT_GPU_CAPACITY,
                 fail_rate: float = 0.0, fail_stems: Iterable[str] | str = (), replace_after: int | None = None,
                 replace_ignores_budget: bool = False, busy_for: float = 0.0, zip_mode: str = "normal"):
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, not {quality!r}")
        if zip_mode not in ZIP_MODES:
            raise ValueError(f"zip_mode must be one of {ZIP_MODES}, not {zip_mode!r}")
        if gpu_capacity < 1:
            raise ValueError("gpu_capacity must be at least 1")
        super().__init__(address, GeneratorHandler, knobs)
        self.quality = quality
        self.warmup = warmup
        self.prompt_latency = prompt_latency
        self.gpu_capacity = gpu_capacity
        self.prompt_fail_rate = fail_rate
        if isinstance(fail_stems, str):
            fail_stems = fail_stems.split(",")
        self.fail_stems = frozenset(s.strip() for s in fail_stems if s.strip())
        self.replace_after = replace_after
        self.replace_ignores_budget = replace_ignores_budget
        self.busy_for = busy_for
        self.zip_mode = zip_mode
        self.started_at = time.monotonic()
        self.ready_at = self.started_at + warmup
        self.busy_until = self.ready_at + busy_for
        self.state_lock = threading.Lock()
        self.batch: Batch | None = None
        self.batches: list[dict] = []  # every accepted batch: {"stems", "seed", "image_urls"}
        self.generated = 0  # modules generated successfully
        self.failed = 0  # prompts that went into _failed.json
        self.completed_batches = 0
        self.resubmits = 0  # idempotent /generate calls
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    # -- state ---------------------------------------------------------------------------------

    def status(self, replacements_remaining: int = 0) -> dict:
        """The /status body (null fields left out) for a caller with that replacement budget."""
        now = time.monotonic()
        with self.state_lock:
            if now < self.ready_at:
                return {"status": "warming_up"}
            if now < self.busy_until:
                progress = min(BUSY_TOTAL - 1, int(BUSY_TOTAL * (now - self.ready_at) / self.busy_for))
                return {"status": "generating", "progress": progress, "total": BUSY_TOTAL}
            if (self.replace_after is not None and self.completed_batches >= self.replace_after
                    and (replacements_remaining > 0 or self.replace_ignores_budget)):
                return {"status": "replace",
                        "payload": {"reason": f"stand-in replace_after={self.replace_after} reached"}}
            batch = self.batch
            if batch is None:
                return {"status": "ready"}
            if batch.archive is None:
                return {"status": "generating", "progress": batch.done, "total": batch.total}
            return {"status": "complete"}

    def submit(self, prompts: list[tuple[str, str]], seed: int) -> tuple[int, dict]:
        """(HTTP status, body) of a validated /generate request."""
        stems = frozenset(stem for stem, _ in prompts)
        current = self.status()["status"]
        with self.state_lock:
            batch = self.batch
            if (current in ("generating", "complete") and batch is not None and batch.stems == stems
                    and time.monotonic() >= self.busy_until):
                self.resubmits += 1
                return 200, {"accepted": batch.total}
            if current not in ("ready", "complete"):
                return 409, {"detail": "Cannot accept batch", "current_status": current}
            batch = Batch(prompts, seed, stems)
            self.batch = batch
            self.batches.append({"stems": [s for s, _ in prompts], "seed": seed,
                                 "image_urls": [u for _, u in prompts]})
        threading.Thread(target=self._run, args=(batch,), daemon=True, name="generator-batch").start()
        return 200, {"accepted": batch.total}

    def results(self) -> bytes | None:
        with self.state_lock:
            return self.batch.archive if self.batch is not None else None

    # -- generation ------------------------------------------------------------------------------

    def _run(self, batch: Batch) -> None:
        queue = list(batch.prompts)
        queue_lock = threading.Lock()

        def worker() -> None:
            while not self._stopping.is_set():
                with queue_lock:
                    if not queue:
                        return
                    stem, url = queue.pop(0)
                if self.prompt_latency > 0 and self._stopping.wait(self.prompt_latency):
                    return
                try:
                    module, reason = self._generate_one(stem, url, batch.seed), None
                except PromptFailure as exc:
                    module, reason = None, str(exc)
                except Exception as exc:  # a stand-in bug must not hang the batch
                    module, reason = None, f"internal error: {type(exc).__name__}: {exc}"
                with self.state_lock:
                    if module is not None:
                        batch.modules[stem] = module
                        self.generated += 1
                    else:
                        batch.failures[stem] = reason or "failed"
                        self.failed += 1
                    batch.done += 1

        workers = [threading.Thread(target=worker, daemon=True, name="generator-gpu")
                   for _ in range(min(self.gpu_capacity, max(1, batch.total)))]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        if self._stopping.is_set():
            return
        try:
            archive = build_archive(dict(batch.modules), dict(batch.failures), self.zip_mode)
        except Exception as exc:  # pragma: no cover - keep the service answering
            archive = build_archive({}, {stem: f"internal error: {exc}" for stem, _ in batch.prompts})
        with self.state_lock:
            batch.archive = archive
            if self.batch is batch:
                self.completed_batches += 1

    def _generate_one(self, stem: str, url: str, seed: int) -> str:
        if stem in self.fail_stems:
            raise PromptFailure("injected failure (fail_stems)")
        if self.prompt_fail_rate > 0 and _fraction(self.knobs.seed, seed, stem) < self.prompt_fail_rate:
            raise PromptFailure("injected failure (fail_rate)")
        return generate_module(stem, seed, self.quality, url)


def _validation_error(loc: list, message: str, kind: str, value: Any = None) -> dict:
    """A FastAPI-style 422 body."""
    error = {"type": kind, "loc": loc, "msg": message}
    if value is not None:
        error["input"] = value
    return {"detail": [error]}


def parse_generate(raw: bytes) -> tuple[list[tuple[str, str]], int] | dict:
    """(prompts, seed) of a /generate body, or the 422 body."""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _validation_error(["body"], f"JSON decode error: {exc}", "json_invalid")
    if not isinstance(payload, dict):
        return _validation_error(["body"], "Input should be a valid dictionary", "model_attributes_type")
    prompts = payload.get("prompts")
    if not isinstance(prompts, list):
        return _validation_error(["body", "prompts"], "Input should be a valid list", "list_type")
    if not prompts:
        return _validation_error(["body", "prompts"], "List should have at least 1 item", "too_short")
    seed = payload.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        return _validation_error(["body", "seed"], "Input should be a valid integer", "int_type", seed)
    parsed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(prompts):
        if not isinstance(item, dict):
            return _validation_error(["body", "prompts", index], "Input should be a valid dictionary",
                                     "model_attributes_type")
        stem, url = item.get("stem"), item.get("image_url")
        if not isinstance(stem, str):
            return _validation_error(["body", "prompts", index, "stem"], "Input should be a valid string",
                                     "string_type", stem)
        if not _STEM.fullmatch(stem):
            return _validation_error(["body", "prompts", index, "stem"],
                                     f"String should match pattern '{STEM_PATTERN}'", "string_pattern_mismatch",
                                     stem)
        if stem in seen:
            return _validation_error(["body", "prompts", index, "stem"], f"Value error, duplicate stem '{stem}'",
                                     "value_error", stem)
        if not isinstance(url, str):
            return _validation_error(["body", "prompts", index, "image_url"], "Input should be a valid string",
                                     "string_type", url)
        seen.add(stem)
        parsed.append((stem, url))
    return parsed, seed


class GeneratorHandler(SimHandler):
    server: GeneratorServer
    routes = {
        ("GET", "/health"): "health",
        ("GET", "/status"): "status",
        ("POST", "/generate"): "generate",
        ("GET", "/results"): "results",
    }

    def _dispatch(self) -> None:
        if self.route(self.command, self.path_only) == "health":  # up as soon as it listens, never faulted
            if not self._read_body():
                return
            stats = self.server.stats
            stats.enter(self.path_only)
            started = time.monotonic()
            try:
                self.send_json(200, {"status": "ok"})
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                stats.leave(time.monotonic() - started)
            return
        SimHandler._dispatch(self)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch

    def do_route_health(self) -> None:  # pragma: no cover - answered in _dispatch
        self.send_json(200, {"status": "ok"})

    def do_route_status(self) -> None:
        raw = self.query.get("replacements_remaining")
        budget = 0
        if raw is not None:
            try:
                budget = int(raw)
            except ValueError:
                self.send_json(422, _validation_error(["query", "replacements_remaining"],
                                                      "Input should be a valid integer", "int_parsing", raw))
                return
        self.send_json(200, self.server.status(budget))

    def do_route_generate(self) -> None:
        parsed = parse_generate(self.body())
        if isinstance(parsed, dict):
            self.send_json(422, parsed)
            return
        status, body = self.server.submit(*parsed)
        self.send_json(status, body)

    def do_route_results(self) -> None:
        archive = self.server.results()
        if archive is None:
            self.send_json(409, {"detail": "results not available"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(archive), RESULTS_CHUNK):
            chunk = archive[start:start + RESULTS_CHUNK]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


# -- entry points ------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quality", choices=QUALITIES, default="good",
                        help="good: modules follow the prompt image; poor: colours and shapes from the stem")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of /status = warming_up after start")
    parser.add_argument("--prompt-latency", type=float, default=0.0, help="seconds to generate one prompt")
    parser.add_argument("--gpu-capacity", type=int, default=DEFAULT_GPU_CAPACITY,
                        help="prompts generated in parallel")
    parser.add_argument("--prompt-fail-rate", type=float, default=0.0,
                        help="share of prompts that fail into _failed.json (seeded by --seed)")
    parser.add_argument("--fail-stems", default="", help="comma-separated stems that always fail")
    parser.add_argument("--replace-after", type=int, default=None,
                        help="report `replace` after this many completed batches")
    parser.add_argument("--replace-ignores-budget", action="store_true",
                        help="report `replace` even when replacements_remaining is 0 or missing")
    parser.add_argument("--busy-for", type=float, default=0.0,
                        help="seconds (after warm-up) of generating someone else's batch (/generate gets 409)")
    parser.add_argument("--zip-mode", choices=ZIP_MODES, default="normal", help="shape of the results ZIP")


def create_server(host: str, port: int, args: argparse.Namespace) -> GeneratorServer:
    return GeneratorServer((host, port), Knobs.from_args(args), quality=args.quality, warmup=args.warmup,
                           prompt_latency=args.prompt_latency, gpu_capacity=args.gpu_capacity,
                           fail_rate=args.prompt_fail_rate, fail_stems=args.fail_stems,
                           replace_after=args.replace_after, replace_ignores_budget=args.replace_ignores_budget,
                           busy_for=args.busy_for, zip_mode=args.zip_mode)


def start_generator(host: str = "127.0.0.1", port: int = 0, *, quality: str = "good", warmup: float = 0.0,
                    prompt_latency: float = 0.0, gpu_capacity: int = DEFAULT_GPU_CAPACITY, fail_rate: float = 0.0,
                    fail_stems: Iterable[str] | str = (), replace_after: int | None = None,
                    replace_ignores_budget: bool = False, busy_for: float = 0.0, zip_mode: str = "normal",
                    latency: float = 0.0, capacity: int = 0, request_fail_rate: float = 0.0,
                    fail_status: int = 503, drop_rate: float = 0.0, seed: int = 0, stall_rate: float = 0.0,
                    stall: float = 0.0) -> GeneratorServer:
    """A generator serving in a background thread; `.url`, `.batches`, `.generated`, `.stop()`.

    `fail_rate` is the share of *prompts* that fail; the common request-fault knob is
    `request_fail_rate` here (with `fail_status`).
    """
    knobs = Knobs(latency, capacity, request_fail_rate, fail_status, drop_rate, seed, stall_rate, stall)
    server = GeneratorServer((host, port), knobs, quality=quality, warmup=warmup, prompt_latency=prompt_latency,
                             gpu_capacity=gpu_capacity, fail_rate=fail_rate, fail_stems=fail_stems,
                             replace_after=replace_after, replace_ignores_budget=replace_ignores_budget,
                             busy_for=busy_for, zip_mode=zip_mode)
    server.start()
    return server
