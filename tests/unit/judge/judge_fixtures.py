"""Builders for the judge's unit tests: replies, synthetic PNGs and a scripted duel driver.

`run_scripted_duel` plays the sequence the `judge` stage will follow (runner404.judge.duel's
docstring), answering each planned call from a `Script` with reply *text* that goes through
`parse_reply` and the neutral fallbacks, so every pure piece is exercised together.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner404 import png
from runner404.judge import calls as C
from runner404.judge import duel as D
from runner404.judge.replies import ReplyError, parse_reply
from runner404.judge.rules import Rules, required_files

OK, GARBAGE = "ok", "garbage"


def pen(p1: float, p2: float, issues: str = "fine") -> dict[str, Any]:
    return {"penalty_1": p1, "penalty_2": p2, "issues": issues}


FAILED = pen(5, 5, "JSON_PARSE_FAILED")


def agreeing(pen_a: float, pen_b: float) -> tuple[dict, dict]:
    """AB and BA replies that both give A `pen_a` and B `pen_b`."""
    return pen(pen_a, pen_b), pen(pen_b, pen_a)


def s1_replies(rules: Rules, *pairs: tuple[dict, dict]) -> dict[str, tuple[dict, dict]]:
    """`{angle label: (ab, ba)}` for the preset's angles, in order; one pair repeats."""
    if len(pairs) == 1:
        pairs = pairs * len(rules.s1.angles)
    return {angle.label: pair for angle, pair in zip(rules.s1.angles, pairs, strict=True)}


def side_guard(rules: Rules, *verdicts: str) -> dict[str, dict[str, str]]:
    """`{side view: SideGuard reply}`; a single verdict repeats."""
    if len(verdicts) == 1:
        verdicts = verdicts * len(rules.s4.views)
    return {view.label: {"verdict": v, "reason": "r"} for view, v in zip(rules.s4.views, verdicts, strict=True)}


def decomposition(*features: str, main_object: str = "wooden chair") -> dict[str, Any]:
    features = features or ("4 legs", "curved back", "round seat", "armrests")
    return {"main_object": main_object,
            "features": [{"description": f, "category": "shape"} for f in features]}


def verification(*matches: str, main_object_correct: bool = True, features: tuple[str, ...] | None = None,
                 ) -> dict[str, Any]:
    features = features or ("4 legs", "curved back", "round seat", "armrests")
    return {"checks": [{"feature": f, "match": m, "note": "n"} for f, m in zip(features, matches, strict=True)],
            "main_object_correct": main_object_correct}


# ---------------------------------------------------------------------------------------------
# PNGs

BACKGROUND = (128, 128, 128)
PALE_GRAY = (220, 220, 222)
DARK_GRAY = (60, 60, 60)
SATURATED = (220, 40, 40)


def sampled_png(samples: list[tuple[int, int, int]], *, width: int = 16, step: int = 4, channels: int = 3,
                filler: tuple[int, int, int] = SATURATED) -> bytes:
    """A PNG whose sampled pixels (every `step`-th column of every `step`-th row, row-major)
    are `samples` then background; every other pixel is `filler` (must be ignored)."""
    per_row = (width + step - 1) // step
    rows_needed = (len(samples) + per_row - 1) // per_row
    height = max(1, rows_needed) * step
    sampled = iter(samples)
    pixels = bytearray()
    for y in range(height):
        for x in range(width):
            if y % step == 0 and x % step == 0:
                rgb = next(sampled, BACKGROUND)
            else:
                rgb = filler
            pixels += bytes(rgb) + (b"\xff" if channels == 4 else b"")
    return png.encode(width, height, bytes(pixels), channels=channels)


def image_png(foreground: tuple[int, int, int], fraction: float = 0.5, size: int = 16) -> bytes:
    """A gray-background image whose top `fraction` of rows is `foreground`."""
    fg_rows = int(size * fraction)
    pixels = b"".join(bytes(foreground if y < fg_rows else BACKGROUND) * size for y in range(size))
    return png.encode(size, size, pixels)


def raw_png(width: int, height: int, *, depth: int, colour: int, row_bytes: int, interlace: int = 0,
            extra_chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A PNG with any header (e.g. 16-bit or palette), rows of zeros, filter type 0."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    raw = b"".join(b"\x00" + bytes(row_bytes) for _ in range(height))
    chunks = [(b"IHDR", header), *extra_chunks, (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]
    return png.SIGNATURE + b"".join(png._chunk(kind, data) for kind, data in chunks)


# ---------------------------------------------------------------------------------------------
# A scripted duel

Reply = Mapping[str, Any] | str | None   # a dict (sent as JSON), raw text, or None (the call fails)


@dataclass
class Script:
    """What the fake VLM answers, per step. Dict replies are sent as JSON text; a str is sent
    verbatim; None makes the call fail (fallback, or a failed sub-judge without one)."""

    s1: Mapping[str, tuple[Reply, Reply]]
    ac: tuple[Reply, Reply] = (pen(4, 4), pen(4, 4))
    decompose: Reply = field(default_factory=decomposition)
    verify_a: Reply = field(default_factory=lambda: verification("yes", "yes", "partial", "no"))
    verify_b: Reply = field(default_factory=lambda: verification("yes", "yes", "partial", "no"))
    bv: tuple[Reply, Reply] | None = None
    embeddings_a: Mapping[str, Any] | None = None
    embeddings_b: Mapping[str, Any] | None = None
    gray_a: bytes | None = field(default_factory=lambda: image_png(SATURATED))
    gray_b: bytes | None = field(default_factory=lambda: image_png(SATURATED))
    s3: tuple[Reply, Reply] = (pen(5, 5), pen(5, 5))
    s4_a: tuple[str, ...] = (OK,)
    s4_b: tuple[str, ...] = (OK,)
    issues: str = "A is closer to the reference."
    elapsed: float = 12.345
    files_left: list[str] | None = None     # None: every required file; [] etc. as given
    files_right: list[str] | None = None
    left_folder: bool = True
    right_folder: bool = True


@dataclass
class Trace:
    record: dict[str, Any]
    calls: list[C.CallSpec] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _ask(call: C.CallSpec, reply: Reply, trace: Trace) -> dict[str, Any] | None:
    """One call: parse the text; on failure the neutral fallback, or None when it has none."""
    trace.calls.append(call)
    text = json.dumps(reply) if isinstance(reply, Mapping) else reply
    try:
        return parse_reply(text, call.response)
    except ReplyError:
        return dict(call.fallback) if call.fallback is not None else None


def _pairwise(calls: list[C.CallSpec], replies: tuple[Reply, Reply], trace: Trace) -> tuple[dict, dict]:
    ab, ba = (_ask(call, reply, trace) for call, reply in zip(calls, replies, strict=True))
    return ab, ba


def _side_files(rules: Rules, given: list[str] | None, folder: bool) -> list[str] | None:
    if not folder:
        return None
    return required_files(rules) if given is None else given


def run_scripted_duel(rules: Rules, script: Script, *, stem: str = "chair", seed: int = 42,
                      prompt_url: str = "https://example.test/chair.png") -> Trace:
    trace = Trace(record={})
    emit: Callable[[str, dict], None] = lambda stage, detail: trace.lines.append(D.stage_line(stem, stage, detail))
    trace.lines.append(D.judging_line(stem))

    preview = D.check_previews(_side_files(rules, script.files_left, script.left_folder),
                               _side_files(rules, script.files_right, script.right_folder), rules)
    if preview is not None:
        return _finish(trace, D.duel_record(stem, prompt_url, rules, preview=preview))

    [explain] = C.calls_for("explain", rules, seed)
    issues = _ask(explain, {"issues": script.issues}, trace)["issues"]

    s1_calls = C.calls_for("s1", rules, seed)
    replies = {}
    for i, angle in enumerate(rules.s1.angles):
        replies[angle.label] = _pairwise(s1_calls[2 * i:2 * i + 2], script.s1[angle.label], trace)
    s1 = D.decide_s1(replies, rules)
    emit("S1", s1.record(rules))
    if s1.choice != D.DRAW:
        return _finish(trace, D.duel_record(stem, prompt_url, rules, s1=s1, issues=issues))

    views = D.best_views(script.embeddings_a, script.embeddings_b, rules)
    bv = None
    if views is not None:
        bv = D.penalty_pair(*_pairwise(C.calls_for("s2bv", rules, seed, best_views=views), script.bv, trace))
    ac = D.penalty_pair(*_pairwise(C.calls_for("s2ac", rules, seed), script.ac, trace))
    [decompose_call] = C.calls_for("s2cl_decompose", rules, seed)
    parsed_checklist = _ask(decompose_call, script.decompose, trace)
    verify_a = verify_b = None
    if parsed_checklist is not None:
        call_a, call_b = C.calls_for("s2cl_verify", rules, seed)
        verify_a, verify_b = _ask(call_a, script.verify_a, trace), _ask(call_b, script.verify_b, trace)
    cl = D.checklist_result(parsed_checklist, verify_a, verify_b, rules)
    s2 = D.decide_s2(bv, ac, cl, rules)
    emit("S2", s2.record(rules))

    s3 = None
    if s2.choice == D.DRAW:
        if script.gray_a is None or script.gray_b is None:
            gate = D.gate_unavailable()
        else:
            gate = D.gray_stats(script.gray_a, script.gray_b, rules)
        ab = ba = None
        if gate.fired:
            ab, ba = _pairwise(C.calls_for("s3", rules, seed), script.s3, trace)
        s3 = D.decide_s3(gate, ab, ba, rules)
        emit("S3", s3.record(rules))

    primary = D.primary_decision(s2, s3, rules)
    s4_calls = C.calls_for("s4", rules, seed)
    n = len(rules.s4.views)
    verdicts_a = side_guard(rules, *script.s4_a)
    verdicts_b = side_guard(rules, *script.s4_b)
    answers_a = {c.view: _ask(c, verdicts_a[c.view], trace) for c in s4_calls[:n]}
    answers_b = {c.view: _ask(c, verdicts_b[c.view], trace) for c in s4_calls[n:]}
    s4 = D.decide_s4(primary.choice, answers_a, answers_b, rules)
    emit("S4", s4.record(rules))
    return _finish(trace, D.duel_record(stem, prompt_url, rules, s1=s1, s2=s2, s3=s3, s4=s4, issues=issues,
                                        elapsed_seconds=script.elapsed))


def _finish(trace: Trace, record: dict[str, Any]) -> Trace:
    trace.record = record
    trace.lines.append(D.final_line(record))
    return trace
