"""A stand-in of the vLLM judge server: OpenAI-compatible /v1 routes answering from the images.

Speaks the wire protocol of protocols.md section 5 (served model `glm-4.6v-flash`):
- `GET /health` -> 200 with an empty body, 503 while `warmup` lasts (requests to /v1 sent
  meanwhile wait until it ends: the real server answers nothing before the weights are up);
- `GET /v1/models` -> `{"object": "list", "data": [{"id": <model>, "object": "model", ...}]}`;
- `GET /version` -> `{"version": ...}`;
- `POST /v1/chat/completions` -> a `chat.completion` object with one choice.

Requests are checked the way vLLM checks them: a JSON object, `model` equal to the served name
(else 404 `{"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", ...}}`),
a non-empty `messages` list whose content is a string or a list of `text` / `image_url` parts,
image URLs `data:` or `http(s)://`; anything malformed is a 400 with the same error shape.

The reply is chosen by the schema label, read from `response_format.json_schema.name`
(`<label>-response`, judge.md section 5), and computed from the images of the request, in
message order. Every readable image (data: URL PNGs; http(s) URLs fetched from loopback only,
10 s timeout) is reduced to a colour signature: pixels are sampled on a grid, the background
(the dominant border colour, white, mid gray within 18 per channel, transparent pixels, and
uniform gutter lines of a grid) is dropped, and each foreground sample goes into one of 15
colour bins (12 hue sectors of 30 degrees, plus black / gray / white for unsaturated pixels).
The colour distance of two images is the total variation distance of their bin histograms,
each slightly spread to neighbouring bins (0 = same colours, 1 = no colour in common).

Replies by label (images in request order):
- `s1_prompt_match`, `s2bv_ab/ba`, `s2ac_ab/ba`, `s3_gray_ab/ba` (prompt, model 1, model 2):
  `{"penalty_1", "penalty_2", "issues"}`, penalty = round(10 x colour distance to the prompt +
  noise) clamped to 0-10, and 10 for a render without any foreground;
- `explain` (prompt, grid A, grid B): `{"issues"}` naming each side's colours the same way;
- `s2cl_decompose` (prompt): `{"main_object", "features"}`, the prompt's dominant colours as
  material_color features plus fixed shape (from the aspect ratio) / presence / count ones, 4-7;
- `s2cl_verify` (prompt, grid): `{"checks", "main_object_correct"}` for the features listed in
  the text (`  <i>. [<category>] <description>`): a feature naming a colour by the share of that
  colour in the grid (yes >= 15 %, partial >= 4 %), the others by the colour distance (yes < 0.35,
  partial < 0.7); `main_object_correct` likewise from the `Main object:` line;
- `s4_per_angle` (front, side): `{"verdict", "reason"}`, `garbage` when the side view is almost
  empty: no foreground at all, or a foreground share below both `empty_threshold` and a quarter
  of the front view's;
- anything else: the smallest object satisfying the request's schema (`{}` without one).

An image that cannot be read (not a PNG, not 8-bit RGB/RGBA, unreachable) gives a neutral reply:
penalties 5/5, all checks `partial`, verdict `ok`. The same request always gets the same reply:
the request's `seed` and `temperature` only move a small tie-breaking noise (amplitude
0.2 + 2 x temperature penalty points) drawn from a hash of the request.

Script mode (`script`, `--script FILE`): a JSON object mapping a label to a list of replies,
consumed in order per label (the last one repeats). A string reply is used verbatim as the
message content, an object with a `status` key is answered as an HTTP error with that status
(and its `message`), any other JSON value is sent as its JSON text. Labels not in the script
are computed as above; scripted replies never get the content faults below.

Knobs. The generic ones of `runner404.sim.http` (latency, capacity, fail_rate / fail_status,
drop_rate, stall_rate / stall, seed) apply to `/v1/chat/completions` only: `capacity` is the
number of requests processed at once (vLLM `--max-num-seqs`; the others queue), `latency` is
the processing time of one request; malformed requests (400, 404) are answered at once, without
a slot or a fault. Content faults, each drawn from a hash of (seed, fault, request) so they do
not depend on the order requests arrive in: `malformed_rate` (content is
prose, no JSON at all), `fenced_rate` (the JSON inside a ```json fence with prose around it),
`trailing_comma_rate` (a comma before the closing brace), `think_rate` (a `<think>...</think>`
block and prose before the JSON). A reply longer than `max_tokens` (4 characters a token) is
cut, with `finish_reason: "length"`, as vLLM would.

Counters: `server.calls_by_label` (valid completion requests by label, faulted ones included),
`server.stats` (the completions are counted from the moment they hold a capacity slot, so
`peak_in_flight` is the processing concurrency and `busy_seconds` the processing time),
`server.spans` ((start, end) monotonic times of every processed completion) and
`server.busy_share(start, end)` (the share of capacity kept busy over a time window).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import colorsys
import hashlib
import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner404 import png
from runner404.sim.http import Knobs, SimHandler, SimServer, is_loopback

DEFAULT_MODEL = "glm-4.6v-flash"
DEFAULT_MAX_MODEL_LEN = 32768
VLLM_VERSION = "0.20.0"
CHARS_PER_TOKEN = 4
TOKENS_PER_IMAGE = 256  # a stand-in figure for `usage`
FETCH_TIMEOUT = 10.0
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 32_000_000
TARGET_SAMPLES = 40_000  # pixels sampled per image, about
BACKGROUND_TOLERANCE = 18
DEFAULT_EMPTY_THRESHOLD = 0.01  # foreground share below which a view is "almost empty"
CACHE_SIZE = 256

PENALTY_LABELS = ("s1_prompt_match", "s2bv_ab", "s2bv_ba", "s2ac_ab", "s2ac_ba", "s3_gray_ab", "s3_gray_ba")
LABELS = (*PENALTY_LABELS, "s2cl_decompose", "s2cl_verify", "s4_per_angle", "explain")

# -- response schemas (judge.md section 5; the shapes pydantic would publish) ----------------

_PENALTY = {
    "type": "object", "title": "Penalty",
    "properties": {"penalty_1": {"type": "integer"}, "penalty_2": {"type": "integer"},
                   "issues": {"type": "string"}},
    "required": ["penalty_1", "penalty_2", "issues"],
}
_CHECKLIST = {
    "type": "object", "title": "Checklist",
    "properties": {
        "main_object": {"type": "string"},
        "features": {
            "type": "array", "minItems": 4, "maxItems": 7,
            "items": {
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "category": {"type": "string", "enum": ["count", "shape", "presence", "material_color"]},
                },
                "required": ["description", "category"],
            },
        },
    },
    "required": ["main_object", "features"],
}
_VERIFICATION = {
    "type": "object", "title": "Verification",
    "properties": {
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "feature": {"type": "string"},
                    "match": {"type": "string", "enum": ["yes", "partial", "no"]},
                    "note": {"type": "string"},
                },
                "required": ["feature", "match", "note"],
            },
        },
        "main_object_correct": {"type": "boolean"},
    },
    "required": ["checks", "main_object_correct"],
}
_SIDE_GUARD = {
    "type": "object", "title": "SideGuard",
    "properties": {"verdict": {"type": "string", "enum": ["ok", "garbage"]}, "reason": {"type": "string"}},
    "required": ["verdict", "reason"],
}
_ISSUES = {
    "type": "object", "title": "Issues",
    "properties": {"issues": {"type": "string"}},
    "required": ["issues"],
}
SCHEMAS: dict[str, dict] = {"penalty": _PENALTY, "checklist": _CHECKLIST, "verification": _VERIFICATION,
                            "side_guard": _SIDE_GUARD, "issues": _ISSUES}
SCHEMA_FOR_LABEL: dict[str, dict] = {**{label: _PENALTY for label in PENALTY_LABELS},
                                     "s2cl_decompose": _CHECKLIST, "s2cl_verify": _VERIFICATION,
                                     "s4_per_angle": _SIDE_GUARD, "explain": _ISSUES}


# -- colour signatures ------------------------------------------------------------------------

HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "mint", "cyan", "sky blue", "blue", "purple",
             "magenta", "pink")
BIN_NAMES = (*HUE_NAMES, "black", "gray", "white")
BLACK, GRAY, WHITE = 12, 13, 14
BINS = len(BIN_NAMES)
# Colour words a checklist description may use, longest first, mapped to their bin.
_COLOUR_WORDS = sorted({**{name: i for i, name in enumerate(BIN_NAMES)},
                        "grey": GRAY, "violet": 9, "brown": 1, "gold": 2, "golden": 2, "silver": GRAY,
                        "teal": 6, "navy": 8, "turquoise": 6, "beige": WHITE, "cream": WHITE,
                        "crimson": 0, "maroon": 0, "rose": 11, "olive": 3}.items(),
                       key=lambda item: -len(item[0]))


def colour_bin(r: int, g: int, b: int) -> int:
    mx, mn = max(r, g, b), min(r, g, b)
    if mx < 40 or (mx - mn) < 0.25 * mx:
        value = mx / 255
        return BLACK if value < 0.3 else GRAY if value < 0.75 else WHITE
    hue, _, _ = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    return int(((hue * 360 + 15) % 360) // 30)


def _spread(hist: Sequence[float]) -> list[float]:
    """Each bin keeps 60 % and gives 20 % to each neighbour (hues on a circle; black-gray-white)."""
    out = [0.0] * BINS
    for i in range(12):
        out[i] += 0.6 * hist[i]
        out[(i + 1) % 12] += 0.2 * hist[i]
        out[(i - 1) % 12] += 0.2 * hist[i]
    out[BLACK] += 0.8 * hist[BLACK]
    out[GRAY] += 0.2 * hist[BLACK] + 0.6 * hist[GRAY] + 0.2 * hist[WHITE]
    out[BLACK] += 0.2 * hist[GRAY]
    out[WHITE] += 0.2 * hist[GRAY] + 0.8 * hist[WHITE]
    return out


@dataclass(frozen=True)
class ImageStats:
    """The colour signature of one image's foreground."""

    width: int
    height: int
    samples: int
    foreground: int
    hist: tuple[float, ...]  # share of the foreground samples per colour bin (sums to 1, or all 0)
    bbox: tuple[int, int, int, int] | None  # foreground x0, y0, x1, y1 in pixels

    @property
    def share(self) -> float:
        return self.foreground / self.samples if self.samples else 0.0

    def dominant(self, minimum: float = 0.0, limit: int = BINS) -> list[int]:
        """Bins by decreasing share (ties: lower bin first), those with at least `minimum`."""
        order = sorted(range(BINS), key=lambda i: (-self.hist[i], i))
        return [i for i in order if self.hist[i] > 0 and self.hist[i] >= minimum][:limit]

    def colour_share(self, index: int) -> float:
        """The share of that colour, counting half of the neighbouring hues."""
        if index < 12:
            return self.hist[index] + 0.5 * (self.hist[(index + 1) % 12] + self.hist[(index - 1) % 12])
        return self.hist[index]

    @property
    def aspect(self) -> float | None:
        if self.bbox is None:
            return None
        x0, y0, x1, y1 = self.bbox
        return (x1 - x0 + 1) / (y1 - y0 + 1)


def colour_distance(a: ImageStats, b: ImageStats) -> float:
    """Total variation distance of the spread histograms: 0 same colours .. 1 nothing in common."""
    if not a.foreground or not b.foreground:
        return 1.0
    sa, sb = _spread(a.hist), _spread(b.hist)
    return min(1.0, 0.5 * sum(abs(x - y) for x, y in zip(sa, sb)))


def image_stats(image: png.Image) -> ImageStats:
    width, height, channels, pixels = image.width, image.height, image.channels, image.pixels
    step = max(1, math.ceil(math.sqrt(width * height / TARGET_SAMPLES)))
    xs, ys = range(0, width, step), range(0, height, step)
    grid: list[list[tuple[int, ...]]] = []
    for y in ys:
        row = []
        base = y * width * channels
        for x in xs:
            at = base + x * channels
            row.append(tuple(pixels[at:at + channels]))
        grid.append(row)
    # Background: white, mid gray, and the dominant border colour (binned by 16 per channel).
    border = grid[0] + grid[-1] + [row[0] for row in grid] + [row[-1] for row in grid]
    border = [p for p in border if channels == 3 or p[3] >= 128]
    backgrounds = [(255, 255, 255), (128, 128, 128)]
    if border:
        groups: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}
        for p in border:
            groups.setdefault((p[0] >> 4, p[1] >> 4, p[2] >> 4), []).append(p)
        key = max(sorted(groups), key=lambda k: len(groups[k]))
        if len(groups[key]) >= 0.25 * len(border):
            members = groups[key]
            backgrounds.append(tuple(round(sum(p[c] for p in members) / len(members)) for c in range(3)))
    # Uniform lines (the gutters of a grid, empty rows) are background too.
    band_rows = {j for j, row in enumerate(grid) if len(row) > 1 and all(p == row[0] for p in row)}
    band_cols = {i for i in range(len(grid[0])) if len(grid) > 1 and all(row[i] == grid[0][i] for row in grid)}
    counts = [0] * BINS
    foreground = 0
    x0 = y0 = 1 << 30
    x1 = y1 = -1
    tol = BACKGROUND_TOLERANCE
    for j, row in enumerate(grid):
        if j in band_rows:
            continue
        for i, p in enumerate(row):
            if i in band_cols or (channels == 4 and p[3] < 128):
                continue
            r, g, b = p[0], p[1], p[2]
            if any(abs(r - q[0]) <= tol and abs(g - q[1]) <= tol and abs(b - q[2]) <= tol for q in backgrounds):
                continue
            foreground += 1
            counts[colour_bin(r, g, b)] += 1
            x, y = i * step, j * step
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
    samples = len(xs) * len(ys)
    hist = tuple(c / foreground for c in counts) if foreground else (0.0,) * BINS
    bbox = (x0, y0, x1, y1) if foreground else None
    return ImageStats(width, height, samples, foreground, hist, bbox)


class ImageError(ValueError):
    """An image the stand-in cannot read (the reply is then neutral)."""


def load_image_bytes(url: str) -> bytes:
    """The bytes behind a data: URL, or an http(s) URL on loopback (never the network)."""
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise ImageError("data: URL without a comma")
        try:
            if header.endswith(";base64"):
                return base64.b64decode(payload, validate=False)
            return urllib.parse.unquote_to_bytes(payload)
        except (binascii.Error, ValueError) as exc:
            raise ImageError(f"bad data: URL: {exc}") from None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ImageError(f"unsupported URL scheme {parts.scheme!r}")
    if not is_loopback(parts.hostname):
        raise ImageError(f"the stand-in fetches images from loopback only, not {parts.hostname!r}")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 (loopback)
            data = response.read(MAX_IMAGE_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ImageError(f"cannot fetch {url}: {exc}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("image too large")
    return data


# -- replies --------------------------------------------------------------------------------

def _unit(*parts: Any) -> float:
    """A number in [0, 1) from a hash of the parts."""
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


@dataclass(frozen=True)
class ChatRequest:
    model: str
    label: str
    schema: Any
    texts: tuple[str, ...]
    image_urls: tuple[str, ...]
    seed: int | None
    temperature: float
    max_tokens: int | None
    digest: str  # of the canonical request


def _name(index: int) -> str:
    return BIN_NAMES[index]


def _colours(stats: ImageStats, limit: int = 2) -> str:
    names = [_name(i) for i in stats.dominant(0.12, limit)] or [_name(i) for i in stats.dominant(0.0, 1)]
    return " and ".join(names) if names else "nothing"


def neutral_reply(label: str, request: ChatRequest, why: str) -> dict:
    if label in PENALTY_LABELS:
        return {"penalty_1": 5, "penalty_2": 5, "issues": f"neutral: {why}"}
    if label == "s2cl_decompose":
        return {"main_object": "object", "features": _generic_features()}
    if label == "s2cl_verify":
        features = parse_features(request.texts)
        return {"checks": [{"feature": d, "match": "partial", "note": "image unreadable, cannot verify"}
                           for _, d in features], "main_object_correct": True}
    if label == "s4_per_angle":
        return {"verdict": "ok", "reason": f"neutral: {why}"}
    if label == "explain":
        return {"issues": f"neutral: {why}"}
    return schema_instance(request.schema)


def _generic_features() -> list[dict]:
    return [{"description": "exactly one main object", "category": "count"},
            {"description": "a solid body with visible volume", "category": "presence"},
            {"description": "a closed, compact overall silhouette", "category": "shape"},
            {"description": "no enclosing box, room walls or floor plane", "category": "presence"}]


_FEATURE_LINE = re.compile(r"^\s*(\d+)\.\s*\[([^\]\n]+)\]\s*(.*?)\s*$", re.MULTILINE)
_MAIN_OBJECT = re.compile(r"^\s*Main object:\s*(.*?)\s*$", re.MULTILINE)


def parse_features(texts: Sequence[str]) -> list[tuple[str, str]]:
    """(category, description) of every `  <i>. [<category>] <description>` line, in order."""
    return [(m.group(2).strip(), m.group(3)) for text in texts for m in _FEATURE_LINE.finditer(text)]


def colour_in(text: str) -> int | None:
    """The bin of the first colour word in the text (longest names first)."""
    lowered = text.lower()
    best: tuple[int, int] | None = None
    for word, index in _COLOUR_WORDS:  # longest first: at the same position "sky blue" beats "blue"
        m = re.search(rf"\b{re.escape(word)}\b", lowered)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), index)
    return best[1] if best else None


class Judge:
    """Computes the reply of one request from its images."""

    def __init__(self, request: ChatRequest, images: list[ImageStats | None], empty_threshold: float):
        self.request = request
        self.images = images
        self.empty = empty_threshold

    def noise(self, *parts: Any, scale: float = 1.0) -> float:
        r = self.request
        amplitude = (0.2 + 2.0 * max(0.0, r.temperature)) * scale
        return (2 * _unit(r.seed, r.temperature, r.label, r.digest, *parts) - 1) * amplitude

    def reply(self) -> dict:
        label = self.request.label
        needed = {"s2cl_decompose": 1, "s2cl_verify": 2, "s4_per_angle": 2}.get(label, 3)
        if label not in LABELS:
            return schema_instance(self.request.schema)
        if len(self.images) < needed:
            return neutral_reply(label, self.request, f"expected {needed} images, got {len(self.images)}")
        unreadable = [i + 1 for i, s in enumerate(self.images[:needed]) if s is None]
        if unreadable:
            return neutral_reply(label, self.request, f"image {unreadable[0]} could not be read")
        if label in PENALTY_LABELS:
            return self.penalty("model 1", "model 2")
        return getattr(self, label)()

    def _penalty_of(self, index: int) -> tuple[int, str]:
        prompt, model = self.images[0], self.images[index]
        assert prompt is not None and model is not None
        if not model.foreground:
            return 10, "is empty"
        distance = colour_distance(prompt, model)
        value = max(0, min(10, round(10 * distance + self.noise("penalty", index))))
        colours = _colours(model)
        if distance < 0.25:
            return value, f"matches the reference colours ({colours})"
        if distance < 0.6:
            return value, f"partly matches the reference colours ({colours} vs {_colours(prompt)})"
        return value, f"shows {colours} instead of {_colours(prompt)}"

    def penalty(self, first: str, second: str) -> dict:
        prompt = self.images[0]
        assert prompt is not None
        if not prompt.foreground:
            return neutral_reply(self.request.label, self.request, "the reference shows no object")
        p1, why1 = self._penalty_of(1)
        p2, why2 = self._penalty_of(2)
        issues = f"{first[:1].upper()}{first[1:]} {why1}; {second} {why2}."
        return {"penalty_1": p1, "penalty_2": p2, "issues": issues}

    def explain(self) -> dict:
        reply = self.penalty("model A", "model B")
        return {"issues": reply["issues"]}

    def s2cl_decompose(self) -> dict:
        prompt = self.images[0]
        assert prompt is not None
        if not prompt.foreground:
            return {"main_object": "unidentified object", "features": _generic_features()}
        colours = prompt.dominant(0.12, 3)
        features = []
        for rank, index in enumerate(colours):
            text = f"predominantly {_name(index)} body" if rank == 0 else f"visible {_name(index)} parts"
            features.append({"description": text, "category": "material_color"})
        aspect = prompt.aspect or 1.0
        shape = ("wider than tall overall silhouette" if aspect > 1.3 else
                 "taller than wide overall silhouette" if aspect < 0.77 else
                 "roughly as wide as tall silhouette")
        features.append({"description": shape, "category": "shape"})
        features.append({"description": "a solid body with visible volume", "category": "presence"})
        features.append({"description": "exactly one main object", "category": "count"})
        if len(features) < 4:
            features.append({"description": "no enclosing box, room walls or floor plane", "category": "presence"})
        main = f"{_name(colours[0])} object" if colours else "object"
        return {"main_object": main, "features": features[:7]}

    def s2cl_verify(self) -> dict:
        prompt, grid = self.images[0], self.images[1]
        assert prompt is not None and grid is not None
        empty = not grid.foreground
        distance = colour_distance(prompt, grid) + self.noise("verify", scale=0.05)
        checks = []
        for number, (category, description) in enumerate(parse_features(self.request.texts)):
            colour = colour_in(description) if category == "material_color" else None
            if empty:
                match, note = "no", "model is empty in every view"
            elif colour is not None:
                share = grid.colour_share(colour) + self.noise("share", number, scale=0.01)
                name = _name(colour)
                if share >= 0.15:
                    match, note = "yes", f"{name} clearly visible across views"
                elif share >= 0.04:
                    match, note = "partial", f"only a little {name} visible"
                else:
                    match, note = "no", f"no {name} visible, shows {_colours(grid)}"
            elif distance < 0.35:
                match, note = "yes", "consistent with the reference in all views"
            elif distance < 0.7:
                match, note = "partial", "only partly consistent with the reference"
            else:
                match, note = "no", "does not resemble the reference"
            checks.append({"feature": description, "match": match, "note": note})
        main = _MAIN_OBJECT.search("\n".join(self.request.texts))
        main_colour = colour_in(main.group(1)) if main else None
        if empty:
            correct = False
        elif main_colour is not None:
            correct = grid.colour_share(main_colour) >= 0.15
        else:
            correct = distance < 0.5
        return {"checks": checks, "main_object_correct": correct}

    def s4_per_angle(self) -> dict:
        front, side = self.images[0], self.images[1]
        assert front is not None and side is not None
        if not side.foreground or side.share < min(self.empty, 0.25 * front.share):
            return {"verdict": "garbage", "reason": "The side view is almost empty; the object is missing."}
        return {"verdict": "ok", "reason": "The side view shows a solid object consistent with the front."}


def schema_instance(schema: Any, defs: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """The smallest value satisfying a (pydantic-style) JSON schema: required keys only."""
    if not isinstance(schema, dict) or depth > 16:
        return {} if depth == 0 else None
    defs = defs if defs is not None else {**schema.get("definitions", {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1])
        return schema_instance(target, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties", {})
        return {k: schema_instance(props.get(k, {}), defs, depth + 1) for k in schema.get("required", [])}
    if kind == "array":
        item = schema_instance(schema.get("items", {}), defs, depth + 1)
        return [item] * int(schema.get("minItems", 0))
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        return int(math.ceil(low)) if kind == "integer" else low
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {} if depth == 0 else None


# -- request parsing ------------------------------------------------------------------------

class RequestError(ValueError):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def payload(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


_ROLES = {"system", "user", "assistant", "developer", "tool"}


def parse_chat_request(raw: bytes, model: str) -> ChatRequest:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    requested = body.get("model")
    if requested is not None and not isinstance(requested, str):
        raise RequestError(400, "model must be a string", param="model")
    if requested is not None and requested != model:
        raise RequestError(404, f"The model `{requested}` does not exist.", "NotFoundError", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    texts: list[str] = []
    urls: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(400, f"{where} must be an object", param="messages")
        if message.get("role") not in _ROLES:
            raise RequestError(400, f"{where}.role must be one of {sorted(_ROLES)}", param="messages")
        content = message.get("content")
        if content is None:
            if message["role"] != "assistant":
                raise RequestError(400, f"{where}.content is required", param="messages")
        elif isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                _parse_part(part, f"{where}.content[{j}]", texts, urls)
        else:
            raise RequestError(400, f"{where}.content must be a string or a list of parts", param="messages")
    label, schema = "", None
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict) or response_format.get("type") not in (
                "text", "json_object", "json_schema", "structural_tag"):
            raise RequestError(400, "response_format.type must be text, json_object or json_schema",
                               param="response_format")
        if response_format["type"] == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
                raise RequestError(400, "response_format.json_schema must be an object with a name",
                                   param="response_format")
            schema = spec.get("schema", spec.get("json_schema"))
            if schema is not None and not isinstance(schema, dict):
                raise RequestError(400, "response_format.json_schema.schema must be an object",
                                   param="response_format")
            name = spec.get("name", "")
            label = name.removesuffix("-response")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, "seed must be an integer", param="seed")
    temperature = body.get("temperature")
    if temperature is None:
        temperature = 1.0  # the OpenAI default; the judge always sends one
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise RequestError(400, "temperature must be a number between 0 and 2", param="temperature")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise RequestError(400, "max_tokens must be a positive integer", param="max_tokens")
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported by the stand-in", param="stream")
    n = body.get("n", 1)
    if n not in (1, None):
        raise RequestError(400, "the stand-in answers n=1 only", param="n")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return ChatRequest(model, label, schema, tuple(texts), tuple(urls), seed, float(temperature), max_tokens,
                       digest)


def _parse_part(part: Any, where: str, texts: list[str], urls: list[str]) -> None:
    if not isinstance(part, dict):
        raise RequestError(400, f"{where} must be an object", param="messages")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise RequestError(400, f"{where}.text must be a string", param="messages")
        texts.append(part["text"])
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise RequestError(400, f"{where}.image_url.url must be a non-empty string", param="messages")
        if not (url.startswith("data:") or urllib.parse.urlsplit(url).scheme in ("http", "https")):
            raise RequestError(400, f"{where}: image URLs must be data: or http(s) URLs", param="messages")
        urls.append(url)
    else:
        raise RequestError(400, f"{where}.type must be text or image_url, not {kind!r}", param="messages")


# -- content faults -------------------------------------------------------------------------

def _trailing_comma(text: str) -> str:
    stripped = text.rstrip()
    if stripped.endswith("}") and stripped not in ("{}",):
        return stripped[:-1].rstrip() + ",}"
    return text


def _fenced(text: str) -> str:
    return f"Here is my evaluation:\n```json\n{text}\n```\nLet me know if you need more detail."


def _think(text: str, label: str) -> str:
    return ("<think>\nI compare the reference image with the rendered views, looking at colours, "
            f"shape and missing parts for {label or 'the task'}.\n</think>\nHere is my answer:\n{text}")


MALFORMED_TEXT = ("I looked at the images carefully. The first model seems closer to the reference overall, "
                  "while the second one has noticeably different colours and details.")


# -- the service ----------------------------------------------------------------------------

def load_script(script: Mapping[str, Any] | str | Path | None) -> dict[str, list[Any]]:
    if script is None:
        return {}
    if isinstance(script, str | Path):
        script = json.loads(Path(script).read_text(encoding="utf-8"))
    if not isinstance(script, Mapping):
        raise ValueError("a VLM script must map labels to lists of replies")
    out: dict[str, list[Any]] = {}
    for label, replies in script.items():
        replies = list(replies) if isinstance(replies, list | tuple) else [replies]
        if not replies:
            raise ValueError(f"script label {label!r} has no replies")
        out[str(label)] = replies
    return out


class VlmServer(SimServer):
    def __init__(self, address: tuple[str, int], knobs: Knobs | None = None, *, model: str = DEFAULT_MODEL,
                 warmup: float = 0.0, malformed_rate: float = 0.0, fenced_rate: float = 0.0,
                 trailing_comma_rate: float = 0.0, think_rate: float = 0.0,
                 script: Mapping[str, Any] | str | Path | None = None,
                 empty_threshold: float = DEFAULT_EMPTY_THRESHOLD, max_model_len: int = DEFAULT_MAX_MODEL_LEN):
        for name, value in (("warmup", warmup), ("malformed_rate", malformed_rate), ("fenced_rate", fenced_rate),
                            ("trailing_comma_rate", trailing_comma_rate), ("think_rate", think_rate),
                            ("empty_threshold", empty_threshold)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
        super().__init__(address, VlmHandler, knobs)
        self.model = model
        self.warmup = warmup
        self.ready_at = time.monotonic() + warmup
        self.malformed_rate = malformed_rate
        self.fenced_rate = fenced_rate
        self.trailing_comma_rate = trailing_comma_rate
        self.think_rate = think_rate
        self.script = load_script(script)
        self.empty_threshold = empty_threshold
        self.max_model_len = max_model_len
        self.created = int(time.time())
        self.calls_by_label: dict[str, int] = {}
        self.spans: list[tuple[float, float]] = []
        self.waiting = 0
        self.peak_waiting = 0
        self.counter_lock = threading.Lock()
        self._script_used: dict[str, int] = {}
        self._cache: OrderedDict[str, ImageStats | None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._completions = 0

    @property
    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at

    @property
    def capacity(self) -> int:
        return self.knobs.capacity

    def busy_share(self, start: float | None = None, end: float | None = None) -> float:
        """Share of the capacity kept processing between two monotonic times (default: first start to
        last end); with unlimited capacity, the mean number of requests processed at once."""
        with self.counter_lock:
            spans = list(self.spans)
        if not spans:
            return 0.0
        start = min(s for s, _ in spans) if start is None else start
        end = max(e for _, e in spans) if end is None else end
        if end <= start:
            return 0.0
        busy = sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans)
        return busy / ((end - start) * (self.capacity or 1))

    def reset_counters(self) -> None:
        with self.counter_lock:
            self.calls_by_label.clear()
            self.spans.clear()
            self.peak_waiting = 0

    def draw(self, name: str, rate: float, request: ChatRequest) -> bool:
        """A content fault drawn from the request itself: independent of arrival order."""
        return rate > 0 and _unit(self.knobs.seed, name, request.digest) < rate

    def scripted(self, label: str) -> tuple[bool, Any]:
        with self.counter_lock:
            replies = self.script.get(label)
            if not replies:
                return False, None
            used = self._script_used.get(label, 0)
            self._script_used[label] = used + 1
            return True, replies[min(used, len(replies) - 1)]

    def stats_of(self, url: str) -> ImageStats | None:
        try:
            data = load_image_bytes(url)
        except ImageError:
            return None
        key = hashlib.sha256(data).hexdigest()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            stats: ImageStats | None = image_stats(png.decode(data, MAX_IMAGE_PIXELS))
        except (png.PngError, ValueError, IndexError):
            stats = None
        with self._cache_lock:
            self._cache[key] = stats
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return stats

    def compute(self, request: ChatRequest) -> str:
        images = [self.stats_of(url) for url in request.image_urls]
        reply = Judge(request, images, self.empty_threshold).reply()
        text = json.dumps(reply)
        if self.draw("malformed", self.malformed_rate, request):
            return MALFORMED_TEXT
        if self.draw("trailing_comma", self.trailing_comma_rate, request):
            text = _trailing_comma(text)
        if self.draw("fenced", self.fenced_rate, request):
            text = _fenced(text)
        if self.draw("think", self.think_rate, request):
            text = _think(text, request.label)
        return text

    def next_id(self, request: ChatRequest) -> str:
        with self.counter_lock:
            self._completions += 1
            return f"chatcmpl-{self._completions:06x}{request.digest[:18]}"


class VlmHandler(SimHandler):
    server: VlmServer
    routes = {
        ("GET", "/health"): "health",
        ("GET", "/v1/models"): "models",
        ("GET", "/version"): "version",
        ("POST", "/v1/chat/completions"): "chat",
        ("GET", "/sim/stats"): "sim_stats",
    }

    def _count(self, path: str) -> None:
        stats = self.server.stats
        with stats.lock:
            stats.requests += 1
            stats.by_path[path] = stats.by_path.get(path, 0) + 1

    def _dispatch(self) -> None:
        if not self._read_body():
            return
        path = self.path_only
        name = self.route(self.command, path)
        try:
            if name == "chat":
                self._chat()
                return
            self._count(path)
            if name is None:
                if any(path == p for _, p in self.routes):
                    self.send_json(405, {"detail": "Method Not Allowed"})
                else:
                    self.send_json(404, {"detail": "Not Found"})
                return
            getattr(self, f"do_route_{name}")()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch

    def do_route_health(self) -> None:
        self.send(200 if self.server.ready else 503, b"", "application/json")

    def do_route_version(self) -> None:
        self.send_json(200, {"version": VLLM_VERSION})

    def do_route_sim_stats(self) -> None:
        """Counters for benchmarks that run the stand-in as its own process (not a vLLM route)."""
        server = self.server
        self.send_json(200, {"calls_by_label": dict(server.calls_by_label), "busy_share": server.busy_share(),
                             "peak_in_flight": server.stats.peak_in_flight, "capacity": server.capacity})

    def do_route_models(self) -> None:
        server = self.server
        self._wait_ready()
        self.send_json(200, {"object": "list", "data": [{
            "id": server.model, "object": "model", "created": server.created, "owned_by": "vllm",
            "root": server.model, "parent": None, "max_model_len": server.max_model_len,
        }]})

    def _wait_ready(self) -> None:
        wait = self.server.ready_at - time.monotonic()
        if wait > 0:  # the real server does not answer before the weights are up
            time.sleep(wait)

    def _chat(self) -> None:
        server = self.server
        self._wait_ready()
        try:
            request = parse_chat_request(self.body(), server.model)
        except RequestError as exc:
            self._count(self.path_only)
            self.send_json(exc.status, exc.payload())
            return
        with server.counter_lock:
            server.calls_by_label[request.label] = server.calls_by_label.get(request.label, 0) + 1
            server.waiting += 1
            server.peak_waiting = max(server.peak_waiting, server.waiting)
        if server.slots:
            server.slots.acquire()
        with server.counter_lock:
            server.waiting -= 1
        stats = server.stats
        stats.enter(self.path_only)
        started = time.monotonic()
        try:
            server.knobs.delay(server)
            if server.chance(server.knobs.drop_rate):
                self.close_connection = True
                self.connection.close()
                return
            if server.chance(server.knobs.fail_rate):
                status = server.knobs.fail_status
                self.send_json(status, RequestError(status, "injected failure", "InternalServerError").payload())
                return
            found, scripted = server.scripted(request.label)
            if found and isinstance(scripted, dict) and "status" in scripted:
                status = int(scripted["status"])
                message = str(scripted.get("message", "scripted failure"))
                self.send_json(status, RequestError(status, message, "ScriptedError").payload())
                return
            if found:
                content = scripted if isinstance(scripted, str) else json.dumps(scripted)
            else:
                content = server.compute(request)
            self.send_json(200, self._completion(request, content))
        finally:
            ended = time.monotonic()
            with server.counter_lock:
                server.spans.append((started, ended))
            stats.leave(ended - started)
            if server.slots:
                server.slots.release()

    def _completion(self, request: ChatRequest, content: str) -> dict:
        finish = "stop"
        tokens = math.ceil(len(content) / CHARS_PER_TOKEN)
        if request.max_tokens is not None and tokens > request.max_tokens:
            content = content[:request.max_tokens * CHARS_PER_TOKEN]
            tokens, finish = request.max_tokens, "length"
        prompt_tokens = (sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in request.texts)
                         + TOKENS_PER_IMAGE * len(request.image_urls))
        return {
            "id": self.server.next_id(request), "object": "chat.completion", "created": int(time.time()),
            "model": request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": []},
                         "logprobs": None, "finish_reason": finish, "stop_reason": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                      "total_tokens": prompt_tokens + tokens},
        }


# -- entry points ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "--served-model-name", dest="model", default=DEFAULT_MODEL,
                        help=f"served model name (default {DEFAULT_MODEL})")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds /health answers 503 after start")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="share of replies that are not JSON")
    parser.add_argument("--fenced-rate", type=float, default=0.0,
                        help="share of replies wrapped in a ```json fence with prose around it")
    parser.add_argument("--trailing-comma-rate", type=float, default=0.0,
                        help="share of replies with a trailing comma before the closing brace")
    parser.add_argument("--think-rate", type=float, default=0.0,
                        help="share of replies prefixed by a <think> block and prose")
    parser.add_argument("--empty-threshold", type=float, default=DEFAULT_EMPTY_THRESHOLD,
                        help="s4_per_angle: a side view with a foreground share below this and below a "
                             "quarter of the front view's is garbage")
    parser.add_argument("--script", default=None,
                        help="JSON file mapping labels to lists of replies used verbatim, in order")


def create_server(host: str, port: int, args: argparse.Namespace) -> VlmServer:
    return VlmServer((host, port), Knobs.from_args(args), model=args.model, warmup=args.warmup,
                     malformed_rate=args.malformed_rate, fenced_rate=args.fenced_rate,
                     trailing_comma_rate=args.trailing_comma_rate, think_rate=args.think_rate,
                     script=args.script, empty_threshold=args.empty_threshold)


def start_vlm(host: str = "127.0.0.1", port: int = 0, *, model: str = DEFAULT_MODEL, warmup: float = 0.0,
              latency: float = 0.0, capacity: int = 0, fail_rate: float = 0.0, fail_status: int = 503,
              drop_rate: float = 0.0, seed: int = 0, stall_rate: float = 0.0, stall: float = 0.0,
              malformed_rate: float = 0.0, fenced_rate: float = 0.0, trailing_comma_rate: float = 0.0,
              think_rate: float = 0.0, script: Mapping[str, Any] | str | Path | None = None,
              empty_threshold: float = DEFAULT_EMPTY_THRESHOLD) -> VlmServer:
    """A VLM stand-in serving in a background thread; `.url`, `.stats`, `.calls_by_label`, `.stop()`."""
    knobs = Knobs(latency, capacity, fail_rate, fail_status, drop_rate, seed, stall_rate, stall)
    server = VlmServer((host, port), knobs, model=model, warmup=warmup, malformed_rate=malformed_rate,
                       fenced_rate=fenced_rate, trailing_comma_rate=trailing_comma_rate, think_rate=think_rate,
                       script=script, empty_threshold=empty_threshold)
    server.start()
    return server


def served_model_name(args: Sequence[str]) -> str:
    """The name a vLLM launch serves: `--served-model-name`, else `--model` / the leading model
    argument, else the default."""
    args = list(args)
    for flag in ("--served-model-name", "--model"):
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args) and not args[i + 1].startswith("-"):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    if args and args[0] == "serve":
        args = args[1:]
    if args and not args[0].startswith("-"):
        return args[0]
    return DEFAULT_MODEL


def max_num_seqs(args: Sequence[str]) -> int | None:
    args = list(args)
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--max-num-seqs" and i + 1 < len(args) else (
            arg.split("=", 1)[1] if arg.startswith("--max-num-seqs=") else None)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None
