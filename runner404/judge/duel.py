"""The duel judge's decisions, pure: S1-S4, the final winner and the record (judge.md §3, §7, §8).

Every function takes already-parsed VLM replies (dicts from `replies.parse_reply` or the
neutral fallbacks, or objects with the same attributes) and a `Rules`, and returns frozen
results whose `record(rules)` is the stage's part of the duel record. No I/O, no clock.

How a driver sequences one duel (judge.md §7; the calls come from `calls.calls_for`):

1. `check_previews(files_left, files_right, rules)`; a result ends the duel (no VLM calls):
   `duel_record(..., preview=...)`.
2. Start the `explain` call in the background; its text becomes `issues` whenever the duel ends.
3. S1: the 8 `s1` calls (concurrently), then `decide_s1`. Emit `S1` with `s1.record(rules)`. A
   choice other than draw ends the duel: `duel_record(..., s1=s1, issues=...)`.
4. S2, three sub-judges concurrently:
   - BV: `best_views(embeddings_a, embeddings_b, rules)`; None -> abstain (best_view=None),
     else the `s2bv` calls with those views, then `penalty_pair(ab, ba)`;
   - AC: the `s2ac` calls, then `penalty_pair(ab, ba)`;
   - CL: `s2cl_decompose` (no fallback: a failure means `decomposition=None`), then both
     `s2cl_verify` calls (a failure of either means that verification is None), then
     `checklist_result(decomposition, verify_a, verify_b, rules)`.
   Then `decide_s2(bv, ac, cl, rules)`. Emit `S2` (before S3 when S3 runs).
5. If `s2.choice == "draw"`: S3. `gray_stats(png_a, png_b, rules)` on `rules.s3.image` of both
   sides (`gate_unavailable()` when they cannot be read); if `gate.fired`, the two `s3` calls;
   then `decide_s3(gate, ab, ba, rules)`. Emit `S3`.
6. S4 always: the 8 `s4` calls, then `decide_s4(primary_decision(s2, s3, rules).choice,
   verdicts_a, verdicts_b, rules)`. Emit `S4`.
7. `duel_record(stem, prompt_url, rules, s1=, s2=, s3=, s4=, issues=, elapsed_seconds=)`.

Machine-readable S3 reason (classic-cli.md D23): in the `404-cli` preset only (`Layout.s3_reason`)
the `s3` record gains a third key, `reason`, after the documented `fired` and `choice`:
`decided`, `gate_not_fired`, `stats_parse_failed`, `gray_images_unavailable`, `json_failed`,
`contradictory` or `small_difference`. The classic `decided_by` string is kept unchanged (a gate
that fired without a choice still reads `S3 (gate did not fire) -> draw`). The `validator`
preset writes exactly the published `{fired, choice}`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner404 import png
from runner404.judge.replies import FAILURE_MARKER
from runner404.judge.rules import Angle, Rules, required_files

A, B, DRAW = "A", "B", "draw"
WINNERS = {A: "left", B: "right", DRAW: "draw"}


def winner_of(choice: str) -> str:
    """A -> left, B -> right, draw -> draw (judge.md §7.5)."""
    return WINNERS[choice]


def _field(reply: Any, name: str) -> Any:
    return reply[name] if isinstance(reply, Mapping) else getattr(reply, name)


def _json_failed(reply: Any) -> bool:
    return _field(reply, "issues") == FAILURE_MARKER


def _strictly_opposite(x: float, y: float) -> bool:
    return (x > 0 and y < 0) or (x < 0 and y > 0)


def _side_for_penalty(diff: float) -> str:
    """Lower penalty wins: A when penalty_a - penalty_b < 0, else B."""
    return A if diff < 0 else B


# ---------------------------------------------------------------------------------------------
# S1: multi-angle prompt match (judge.md §7.1)

@dataclass(frozen=True)
class AngleResult:
    label: str
    weight: float
    pen_a: float
    pen_b: float
    diff_ab: int            # AB.p1 - AB.p2
    diff_ba: int            # BA.p2 - BA.p1
    json_failed: bool
    contradictory: bool

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "pen_a": self.pen_a, "pen_b": self.pen_b}


def score_angle(angle: Angle, ab: Any, ba: Any) -> AngleResult:
    """One angle from its AB reply (A is model 1) and BA reply (B is model 1)."""
    ab_1, ab_2 = _field(ab, "penalty_1"), _field(ab, "penalty_2")
    ba_1, ba_2 = _field(ba, "penalty_1"), _field(ba, "penalty_2")
    diff_ab, diff_ba = ab_1 - ab_2, ba_2 - ba_1
    json_failed = _json_failed(ab) or _json_failed(ba)
    return AngleResult(label=angle.label, weight=angle.weight, pen_a=(ab_1 + ba_2) / 2, pen_b=(ab_2 + ba_1) / 2,
                       diff_ab=diff_ab, diff_ba=diff_ba, json_failed=json_failed,
                       contradictory=json_failed or _strictly_opposite(diff_ab, diff_ba))


@dataclass(frozen=True)
class SplitCheck:
    """Direction consistency over the kept angles whose pen_a != pen_b."""

    w_a: float
    w_b: float
    consistency: float
    n_signed: int


def split_check(kept: Sequence[AngleResult]) -> SplitCheck:
    w_a = w_b = 0.0
    n_signed = 0
    for angle in kept:
        if angle.pen_a == angle.pen_b:
            continue
        n_signed += 1
        if angle.pen_a < angle.pen_b:
            w_a += angle.weight
        else:
            w_b += angle.weight
    total = w_a + w_b
    if total == 0:
        return SplitCheck(0.0, 0.0, 1.0, 0)
    return SplitCheck(w_a, w_b, abs(w_a - w_b) / total, n_signed)


def weighted_means(kept: Sequence[AngleResult]) -> tuple[float, float]:
    """wpA, wpB with the weights renormalised over the kept angles."""
    total = sum(angle.weight for angle in kept)
    return (sum(angle.weight * angle.pen_a for angle in kept) / total,
            sum(angle.weight * angle.pen_b for angle in kept) / total)


@dataclass(frozen=True)
class S1Result:
    choice: str
    reason: str             # the classic text, e.g. "wpA=2.00 wpB=5.00 diff=-3.00 -> A"
    rule: str               # all_contradictory | both_bad | tie | split | decided
    angles: tuple[AngleResult, ...]
    wp_a: float | None = None
    wp_b: float | None = None
    split: SplitCheck | None = None

    @property
    def n_total(self) -> int:
        return len(self.angles)

    @property
    def n_consistent(self) -> int:
        return sum(1 for angle in self.angles if not angle.contradictory)

    def record(self, rules: Rules) -> dict[str, Any]:
        """`{choice, n_total, n_consistent, angles, [reason]}` (judge.md §7.1, §9)."""
        record: dict[str, Any] = {"choice": self.choice, "n_total": self.n_total, "n_consistent": self.n_consistent,
                                  "angles": [angle.record() for angle in self.angles]}
        if rules.layout.s1_reason:
            record["reason"] = self.reason
        return record


def decide_s1(replies: Mapping[str, tuple[Any, Any]], rules: Rules) -> S1Result:
    """S1 from `{angle label: (AB reply, BA reply)}` for every angle of `rules.s1.angles`."""
    s1, arrow = rules.s1, rules.layout.arrow
    angles = tuple(score_angle(angle, *replies[angle.label]) for angle in s1.angles)
    kept = [angle for angle in angles if not angle.contradictory]
    if not kept:
        return S1Result(DRAW, f"all {len(angles)} angles contradictory {arrow} draw", "all_contradictory", angles)
    wp_a, wp_b = weighted_means(kept)
    diff, avg = wp_a - wp_b, (wp_a + wp_b) / 2.0
    means = f"wpA={wp_a:.2f} wpB={wp_b:.2f}"
    if avg >= s1.both_bad_average and abs(diff) <= s1.both_bad_difference:
        return S1Result(DRAW, f"{means} avg={avg:.2f} both-bad {arrow} draw", "both_bad", angles, wp_a, wp_b)
    if abs(diff) <= s1.draw_threshold:
        return S1Result(DRAW, f"{means} |diff|={abs(diff):.2f} {arrow} draw", "tie", angles, wp_a, wp_b)
    split = split_check(kept)
    if split.n_signed >= s1.split_min_angles and split.consistency < s1.split_consistency:
        reason = f"split wA={split.w_a:.1f} wB={split.w_b:.1f} consistency={split.consistency:.2f} {arrow} draw"
        return S1Result(DRAW, reason, "split", angles, wp_a, wp_b, split)
    choice = _side_for_penalty(diff)
    return S1Result(choice, f"{means} diff={diff:+.2f} {arrow} {choice}", "decided", angles, wp_a, wp_b, split)


# ---------------------------------------------------------------------------------------------
# S2: best view, artifact compare, checklist, votes (judge.md §7.2)

@dataclass(frozen=True)
class PenaltyPair:
    """A BV or AC sub-judge: each side's mean penalty over its AB and BA replies."""

    penalty_a: float
    penalty_b: float

    @property
    def diff(self) -> float:
        return float(self.penalty_a) - float(self.penalty_b)

    def record(self) -> dict[str, Any]:
        return {"penalty_a": self.penalty_a, "penalty_b": self.penalty_b}


def penalty_pair(ab: Any, ba: Any) -> PenaltyPair:
    """penalty_a = (AB.p1 + BA.p2)/2, penalty_b = (AB.p2 + BA.p1)/2."""
    return PenaltyPair((_field(ab, "penalty_1") + _field(ba, "penalty_2")) / 2,
                       (_field(ab, "penalty_2") + _field(ba, "penalty_1")) / 2)


def _dot(x: Any, y: Any) -> float:
    return float(sum(float(a) * float(b) for a, b in zip(x, y, strict=True)))


def pick_best_view(embeddings: Mapping[str, Any] | None) -> str | None:
    """The view whose `view_<name>` vector has the largest dot product with `prompt` (first one
    on ties); None without a prompt vector or any view vector."""
    if not embeddings or "prompt" not in embeddings:
        return None
    views = [key for key in embeddings if key.startswith("view_")]
    if not views:
        return None
    best = max(views, key=lambda key: _dot(embeddings[key], embeddings["prompt"]))
    return best[len("view_"):]


def best_views(embeddings_a: Mapping[str, Any] | None, embeddings_b: Mapping[str, Any] | None,
               rules: Rules) -> tuple[str, str] | None:
    """Both sides' best views, or None when BV abstains (a file or key missing, or BV off)."""
    if not rules.s2.best_view:
        return None
    view_a, view_b = pick_best_view(embeddings_a), pick_best_view(embeddings_b)
    if view_a is None or view_b is None:
        return None
    return view_a, view_b


def checklist_score(verification: Any, rules: Rules) -> int:
    """Σ over the returned checks (yes 2, partial 1, no 0) + 3 if main_object_correct."""
    checks = _field(verification, "checks")
    score = sum(rules.s2.match_score(_field(check, "match")) for check in checks)
    return score + (rules.s2.main_object_bonus if _field(verification, "main_object_correct") else 0)


@dataclass(frozen=True)
class ChecklistResult:
    main_object: str | None
    features: tuple[str, ...]
    verify_a: Any | None
    verify_b: Any | None
    score_a: int
    score_b: int
    gap: int
    choice: str
    decompose_failed: bool = False
    verify_failed: bool = False

    def summary(self) -> dict[str, Any]:
        """The record's `checklist` (judge.md §7.2): the raw failure dict when decompose
        failed, else `{main_object, main_object_correct_a/_b, features: [{feature, side_a,
        side_b}], score_a, score_b}` with matches looked up by exact feature text (null when
        the VLM renamed a feature, and everywhere when a verification failed)."""
        if self.decompose_failed:
            return {"decompose_failed": True, "score_a": 0, "score_b": 0, "gap": 0, "choice": DRAW}
        matches_a, matches_b = _matches(self.verify_a), _matches(self.verify_b)
        return {
            "main_object": self.main_object,
            "main_object_correct_a": _main_object_correct(self.verify_a),
            "main_object_correct_b": _main_object_correct(self.verify_b),
            "features": [{"feature": feature, "side_a": matches_a.get(feature), "side_b": matches_b.get(feature)}
                         for feature in self.features],
            "score_a": self.score_a,
            "score_b": self.score_b,
        }


def _matches(verification: Any | None) -> dict[str, str]:
    if verification is None:
        return {}
    return {_field(check, "feature"): _field(check, "match") for check in _field(verification, "checks")}


def _main_object_correct(verification: Any | None) -> bool | None:
    return None if verification is None else _field(verification, "main_object_correct")


def checklist_result(decomposition: Any | None, verify_a: Any | None, verify_b: Any | None,
                     rules: Rules) -> ChecklistResult:
    """The CL sub-judge. `decomposition` None: decompose failed; a verification None: that
    verify call failed. Either failure scores 0/0, gap 0, draw."""
    if decomposition is None:
        return ChecklistResult(None, (), None, None, 0, 0, 0, DRAW, decompose_failed=True)
    main_object = _field(decomposition, "main_object")
    features = tuple(_field(feature, "description") for feature in _field(decomposition, "features"))
    if verify_a is None or verify_b is None:
        return ChecklistResult(main_object, features, None, None, 0, 0, 0, DRAW, verify_failed=True)
    score_a, score_b = checklist_score(verify_a, rules), checklist_score(verify_b, rules)
    gap = score_a - score_b
    threshold = rules.s2.checklist_decision_gap
    choice = A if gap >= threshold else B if gap <= -threshold else DRAW
    return ChecklistResult(main_object, features, verify_a, verify_b, score_a, score_b, gap, choice)


def penalty_vote(pair: PenaltyPair | None, rules: Rules) -> str | None:
    """BV / AC vote: the lower-penalty side when |penalty_a - penalty_b| >= 1.0."""
    if pair is None or abs(pair.diff) < rules.s2.vote_penalty_gap:
        return None
    return _side_for_penalty(pair.diff)


def checklist_vote(checklist: ChecklistResult, rules: Rules) -> str | None:
    """CL vote: A when gap >= 2, B when gap <= -2."""
    if abs(checklist.gap) < rules.s2.vote_checklist_gap:
        return None
    return A if checklist.gap > 0 else B


@dataclass(frozen=True)
class StrongVoter:
    choice: str
    tag: str                # e.g. "bv|+2.5|+cl|+7|"


def strong_voter(best_view: PenaltyPair | None, checklist: ChecklistResult, rules: Rules) -> StrongVoter | None:
    """BV at |diff| >= 2.5 (tag `bv|<diff:+.1f>|`) and CL at |gap| >= 7 (tag `cl|<gap:+d>|`);
    a choice only when at least one is strong and all strong ones agree (judge.md §7.2)."""
    candidates: list[tuple[str, str]] = []
    if best_view is not None and abs(best_view.diff) >= rules.s2.strong_best_view_gap:
        candidates.append((_side_for_penalty(best_view.diff), f"bv|{best_view.diff:+.1f}|"))
    if abs(checklist.gap) >= rules.s2.strong_checklist_gap:
        candidates.append((A if checklist.gap > 0 else B, f"cl|{checklist.gap:+d}|"))
    sides = {side for side, _ in candidates}
    if len(sides) != 1:
        return None
    return StrongVoter(sides.pop(), "+".join(tag for _, tag in candidates))


def consensus(votes: Sequence[str | None], rules: Rules) -> tuple[str, dict[str, int]]:
    """Count the votes cast: none -> draw; top count < 2 -> draw; top count > the others'
    total -> that side; else draw. Counts are in first-vote order."""
    counts: dict[str, int] = {}
    for vote in votes:
        if vote:
            counts[vote] = counts.get(vote, 0) + 1
    if not counts:
        return DRAW, counts
    top = max(counts, key=lambda side: counts[side])
    others = sum(n for side, n in counts.items() if side != top)
    if counts[top] < rules.s2.consensus_min_votes or counts[top] <= others:
        return DRAW, counts
    return top, counts


@dataclass(frozen=True)
class S2Result:
    choice: str
    source: str             # strong_voter | consensus_3
    best_view: PenaltyPair | None
    artifact_compare: PenaltyPair
    checklist: ChecklistResult
    votes: Mapping[str, str | None]
    strong_tag: str | None = None
    vote_counts: Mapping[str, int] | None = None

    @property
    def decided_by(self) -> str | None:
        """`S2 strong_voter [<tags>]`, `S2 consensus`, or None when S2 is a draw."""
        if self.source == "strong_voter":
            return f"S2 strong_voter [{self.strong_tag}]"
        return "S2 consensus" if self.choice != DRAW else None

    def record(self, rules: Rules) -> dict[str, Any]:
        """`{choice, source, best_view, artifact_compare, checklist, [votes, strong_tag |
        vote_counts]}` (judge.md §7.2; the validator layout has no votes, §9)."""
        record: dict[str, Any] = {
            "choice": self.choice,
            "source": self.source,
            "best_view": self.best_view.record() if self.best_view is not None else None,
            "artifact_compare": self.artifact_compare.record(),
            "checklist": self.checklist.summary(),
        }
        if rules.layout.s2_votes:
            record["votes"] = dict(self.votes)
            if self.source == "strong_voter":
                record["strong_tag"] = self.strong_tag
            else:
                record["vote_counts"] = dict(self.vote_counts or {})
        return record


def decide_s2(best_view: PenaltyPair | None, artifact_compare: PenaltyPair, checklist: ChecklistResult,
              rules: Rules) -> S2Result:
    """S2 from its sub-judges (best_view None: BV abstained): a strong voter, else consensus."""
    votes = {"best_view": penalty_vote(best_view, rules), "artifact_compare": penalty_vote(artifact_compare, rules),
             "checklist": checklist_vote(checklist, rules)}
    strong = strong_voter(best_view, checklist, rules)
    if strong is not None:
        return S2Result(strong.choice, "strong_voter", best_view, artifact_compare, checklist, votes,
                        strong_tag=strong.tag)
    choice, counts = consensus(list(votes.values()), rules)
    return S2Result(choice, "consensus_3", best_view, artifact_compare, checklist, votes, vote_counts=counts)


# ---------------------------------------------------------------------------------------------
# S3: gray-background rescue (judge.md §7.3)

@dataclass(frozen=True)
class GrayStats:
    foreground_samples: int
    pale_fraction: float
    grayish_fraction: float
    mean_luma: float


# GateResult.reason values: the classic judge's internal texts.
GATE_FIRED = "gate fired"
GATE_NOT_FIRED = "gate did not fire"
GATE_PARSE_FAILED = "stats parse failed"
GATE_UNAVAILABLE = "gray PNGs unavailable"
_GATE_CODES = {GATE_FIRED: "decided", GATE_NOT_FIRED: "gate_not_fired", GATE_PARSE_FAILED: "stats_parse_failed",
               GATE_UNAVAILABLE: "gray_images_unavailable"}


@dataclass(frozen=True)
class GateResult:
    fired: bool
    reason: str                     # one of the GATE_* texts
    stats: GrayStats | None = None
    error: str | None = None        # why the images could not be used

    @property
    def code(self) -> str:
        return _GATE_CODES[self.reason]


def sample_pixels(image: png.Image, step: int) -> Iterator[tuple[int, int, int]]:
    """RGB of every `step`-th column of every `step`-th row (alpha ignored)."""
    channels, stride = image.channels, image.width * image.channels
    pixels = image.pixels
    for y in range(0, image.height, step):
        row = y * stride
        for x in range(0, image.width, step):
            at = row + x * channels
            yield pixels[at], pixels[at + 1], pixels[at + 2]


def _is_background(rgb: tuple[int, int, int], rules: Rules) -> bool:
    return max(abs(c - bg) for c, bg in zip(rgb, rules.s3.background_rgb)) <= rules.s3.background_tolerance


def foreground_stats(images: Sequence[png.Image], rules: Rules) -> GrayStats:
    """Pale and grayish fractions of the foreground samples, pooled over `images`."""
    s3 = rules.s3
    foreground = pale = grayish = 0
    luma_sum = 0.0
    for image in images:
        for rgb in sample_pixels(image, s3.sample_step):
            if _is_background(rgb, rules):
                continue
            foreground += 1
            red, green, blue = rgb
            brightest, darkest = max(rgb), min(rgb)
            saturation = (brightest - darkest) / brightest if brightest else 0.0
            luma = 0.2126 * red + 0.7152 * green + 0.0722 * blue
            luma_sum += luma
            grayish += saturation < s3.grayish_saturation
            pale += luma > s3.pale_luma and saturation < s3.pale_saturation
    if foreground == 0:
        return GrayStats(0, 0.0, 0.0, 0.0)
    return GrayStats(foreground, pale / foreground, grayish / foreground, luma_sum / foreground)


def gate_fires(stats: GrayStats, rules: Rules) -> bool:
    return stats.pale_fraction >= rules.s3.pale_fraction and stats.grayish_fraction >= rules.s3.grayish_fraction


def gray_stats(png_a: bytes, png_b: bytes, rules: Rules) -> GateResult:
    """The S3 gate on both sides' gray images: 8-bit RGB/RGBA non-interlaced PNGs only;
    anything else -> not fired, reason "stats parse failed" (judge.md §7.3)."""
    images = []
    for side, data in (("A", png_a), ("B", png_b)):
        try:
            images.append(png.decode(data))
        except (ValueError, struct.error, IndexError) as exc:
            return GateResult(False, GATE_PARSE_FAILED, error=f"{side}: {exc}")
    stats = foreground_stats(images, rules)
    fired = gate_fires(stats, rules)
    return GateResult(fired, GATE_FIRED if fired else GATE_NOT_FIRED, stats)


def gate_unavailable(error: str | None = None) -> GateResult:
    """The gate when a side's gray image cannot be read."""
    return GateResult(False, GATE_UNAVAILABLE, error=error)


@dataclass(frozen=True)
class S3Result:
    gate: GateResult
    choice: str | None
    reason: str                     # machine-readable, see the module docstring
    pen_a: float | None = None
    pen_b: float | None = None
    json_failed: bool = False
    contradictory: bool = False

    @property
    def fired(self) -> bool:
        return self.gate.fired

    def record(self, rules: Rules) -> dict[str, Any]:
        """`{fired, choice}` plus `reason` in the 404-cli layout (classic-cli.md D23)."""
        record: dict[str, Any] = {"fired": self.fired, "choice": self.choice}
        if rules.layout.s3_reason:
            record["reason"] = self.reason
        return record


def decide_s3(gate: GateResult, ab: Any | None, ba: Any | None, rules: Rules) -> S3Result:
    """S3's choice from the gate and, when it fired, the AB (S) and BA (S+7) gray replies: none
    if a reply is the JSON-failed fallback (404-cli), the two orders strictly contradict, or
    |pen_a - pen_b| < 2.0; else the lower-penalty side."""
    if not gate.fired:
        return S3Result(gate, None, gate.code)
    if ab is None or ba is None:
        raise ValueError("the gate fired: decide_s3 needs the AB and BA gray replies")
    pair = penalty_pair(ab, ba)
    diff_ab = _field(ab, "penalty_1") - _field(ab, "penalty_2")
    diff_ba = _field(ba, "penalty_2") - _field(ba, "penalty_1")
    json_failed, contradictory = _json_failed(ab) or _json_failed(ba), _strictly_opposite(diff_ab, diff_ba)
    facts = {"pen_a": pair.penalty_a, "pen_b": pair.penalty_b, "json_failed": json_failed,
             "contradictory": contradictory}
    if json_failed and rules.s3.json_failure_blocks_choice:
        return S3Result(gate, None, "json_failed", **facts)
    if contradictory:
        return S3Result(gate, None, "contradictory", **facts)
    if abs(pair.diff) < rules.s3.decision_gap:
        return S3Result(gate, None, "small_difference", **facts)
    return S3Result(gate, _side_for_penalty(pair.diff), "decided", **facts)


# ---------------------------------------------------------------------------------------------
# S4: side-view garbage guard (judge.md §7.4)

def side_verdict(verdicts: Sequence[str], rules: Rules) -> str:
    """`garbage` when at least K (3) of the side's angles say garbage, else `ok`."""
    return "garbage" if sum(1 for v in verdicts if v == "garbage") >= rules.s4.garbage_votes else "ok"


def step_down(primary: str, verdict_a: str, verdict_b: str) -> str:
    """judge.md §7.4: same verdicts -> unchanged; only A garbage: A -> draw, draw -> B, B stays;
    only B garbage: B -> draw, draw -> A, A stays."""
    a_bad, b_bad = verdict_a == "garbage", verdict_b == "garbage"
    if a_bad == b_bad:
        return primary
    bad, other = (A, B) if a_bad else (B, A)
    if primary == bad:
        return DRAW
    if primary == DRAW:
        return other
    return primary


def _verdict(reply: Any) -> str:
    return reply if isinstance(reply, str) else _field(reply, "verdict")


@dataclass(frozen=True)
class S4Result:
    primary: str
    choice: str
    verdict_a: str
    verdict_b: str
    per_angle_a: tuple[tuple[str, str], ...]
    per_angle_b: tuple[tuple[str, str], ...]

    @property
    def applied(self) -> bool:
        return self.choice != self.primary

    def record(self, rules: Rules | None = None) -> dict[str, Any]:
        """`{choice, side_verdicts: {a, b}, per_angle: {a: {<label>: verdict}, b: {...}}}`."""
        return {"choice": self.choice, "side_verdicts": {"a": self.verdict_a, "b": self.verdict_b},
                "per_angle": {"a": dict(self.per_angle_a), "b": dict(self.per_angle_b)}}


def decide_s4(primary: str, replies_a: Mapping[str, Any], replies_b: Mapping[str, Any], rules: Rules) -> S4Result:
    """S4 from `{side view label: SideGuard reply or verdict}` per side, for `rules.s4.views`."""
    per_a = tuple((view.label, _verdict(replies_a[view.label])) for view in rules.s4.views)
    per_b = tuple((view.label, _verdict(replies_b[view.label])) for view in rules.s4.views)
    verdict_a = side_verdict([v for _, v in per_a], rules)
    verdict_b = side_verdict([v for _, v in per_b], rules)
    return S4Result(primary, step_down(primary, verdict_a, verdict_b), verdict_a, verdict_b, per_a, per_b)


# ---------------------------------------------------------------------------------------------
# Final decision (judge.md §7.5)

@dataclass(frozen=True)
class Decision:
    choice: str
    decided_by: str

    @property
    def winner(self) -> str:
        return winner_of(self.choice)


def primary_decision(s2: S2Result, s3: S3Result | None, rules: Rules) -> Decision:
    """The choice S4 starts from: S2's, else S3's (draw without one), with its decided_by."""
    if s2.choice != DRAW:
        return Decision(s2.choice, s2.decided_by or "")
    if s3 is None:
        raise ValueError("S2 is a draw: the primary decision needs the S3 result")
    if s3.choice is not None:
        return Decision(s3.choice, "S3 gray-rescue")
    return Decision(DRAW, f"S3 (gate did not fire) {rules.layout.arrow} draw")


def final_decision(s1: S1Result, s2: S2Result | None = None, s3: S3Result | None = None,
                   s4: S4Result | None = None, *, rules: Rules) -> Decision:
    """S1's choice when decisive; else S4's choice, decided_by `S4 step-down (was <X>)` when
    S4 changed the primary choice, else the S2/S3 decided_by."""
    if s1.choice != DRAW:
        return Decision(s1.choice, "S1")
    if s2 is None or s4 is None:
        raise ValueError("S1 is a draw: the final decision needs the S2 and S4 results")
    primary = primary_decision(s2, s3, rules)
    if s4.primary != primary.choice:
        raise ValueError(f"S4 started from {s4.primary}, but the primary choice is {primary.choice}")
    if s4.applied:
        return Decision(s4.choice, f"S4 step-down (was {primary.choice})")
    return Decision(s4.choice, primary.decided_by)


# ---------------------------------------------------------------------------------------------
# Missing previews (judge.md §3, classic-cli.md D21)

@dataclass(frozen=True)
class PreviewCheck:
    winner: str
    reason: str
    missing: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (side, files) of incomplete folders

    def detail(self, rules: Rules) -> dict[str, Any]:
        """`{"reason": ...}`; the 404-cli layout adds `missing: {left|right: [files]}` for a
        side whose folder exists but lacks files."""
        detail: dict[str, Any] = {"reason": self.reason}
        if rules.layout.missing_files and self.missing:
            detail["missing"] = {side: list(files) for side, files in self.missing}
        return detail


def missing_files(present: Collection[str] | None, rules: Rules) -> list[str]:
    """Required files (`rules.required_files`) not in `present`; None means no folder."""
    needed = required_files(rules)
    if present is None:
        return needed
    return [path for path in needed if path not in present]


def check_previews(left: Collection[str] | None, right: Collection[str] | None, rules: Rules) -> PreviewCheck | None:
    """None when both sides have every required file; else the §3 outcome. `left`/`right`:
    the relative paths present in that side's stem folder (at least the required ones), or
    None when the folder does not exist. An incomplete side counts as having no preview."""
    missing_left, missing_right = missing_files(left, rules), missing_files(right, rules)
    incomplete = tuple((side, tuple(files)) for side, files, present in
                       (("left", missing_left, left), ("right", missing_right, right))
                       if files and present is not None)
    if missing_left and missing_right:
        return PreviewCheck("draw", "no previews on either side", incomplete)
    if missing_left:
        return PreviewCheck("right", "no preview from left", incomplete)
    if missing_right:
        return PreviewCheck("left", "no preview from right", incomplete)
    return None


# ---------------------------------------------------------------------------------------------
# Records and log lines (judge.md §8)

def duel_record(stem: str, prompt_url: str, rules: Rules, *, preview: PreviewCheck | None = None,
                s1: S1Result | None = None, s2: S2Result | None = None, s3: S3Result | None = None,
                s4: S4Result | None = None, issues: str = "", elapsed_seconds: float | None = None) -> dict[str, Any]:
    """`{"stem", "prompt_url", "winner", "detail"}` with `detail` keys in the order of §8:
    missing preview `{reason}`; S1-decided `{s1, decided_by, issues}`; full
    `{s1, s2, [s3], s4, decided_by, issues, [elapsed_seconds]}` (`s3` only when S3 ran, and
    `elapsed_seconds`, rounded to 0.1, only in the 404-cli layout)."""
    if preview is not None:
        return _record(stem, prompt_url, preview.winner, preview.detail(rules))
    if s1 is None:
        raise ValueError("a duel record needs either a preview check or the S1 result")
    _check_stages_ran(s1, s2, s3, s4)
    decision = final_decision(s1, s2, s3, s4, rules=rules)
    detail: dict[str, Any] = {"s1": s1.record(rules)}
    if s2 is not None and s4 is not None:   # S1 was a draw (final_decision checked both are given)
        detail["s2"] = s2.record(rules)
        if s3 is not None:
            detail["s3"] = s3.record(rules)
        elif rules.layout.s3_when_s2_decided:
            detail["s3"] = _s3_not_run(rules)
        detail["s4"] = s4.record(rules)
    detail["decided_by"] = decision.decided_by
    detail["issues"] = issues
    if s1.choice == DRAW and rules.layout.elapsed_seconds:
        if elapsed_seconds is None:
            raise ValueError("this preset records elapsed_seconds: pass the duel's wall time")
        detail["elapsed_seconds"] = round(elapsed_seconds, 1)
    return _record(stem, prompt_url, decision.winner, detail)


def _check_stages_ran(s1: S1Result, s2: S2Result | None, s3: S3Result | None, s4: S4Result | None) -> None:
    """Catch a driver that ran a stage §7 skips (S2-S4 after a decisive S1, S3 after S2 decided)."""
    if s1.choice != DRAW and (s2 is not None or s3 is not None or s4 is not None):
        raise ValueError("S1 decided: S2, S3 and S4 do not run")
    if s2 is not None and s2.choice != DRAW and s3 is not None:
        raise ValueError("S2 decided: S3 does not run")


def _s3_not_run(rules: Rules) -> dict[str, Any]:
    record: dict[str, Any] = {"fired": False, "choice": None}
    if rules.layout.s3_reason:
        record["reason"] = "not_run"
    return record


def skipped_record(stem: str, prompt_url: str, error: str) -> dict[str, Any]:
    """A duel that failed (judge.md §8, runner404): winner `skipped`, the error in detail."""
    return _record(stem, prompt_url, "skipped", {"error": error})


def _record(stem: str, prompt_url: str, winner: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"stem": stem, "prompt_url": prompt_url, "winner": winner, "detail": detail}


def judging_line(stem: str) -> str:
    return f"\nJudging {stem}"


def stage_line(stem: str, stage: str, detail: Mapping[str, Any]) -> str:
    """`<stem> <STAGE>: <detail as JSON, keys sorted, non-ASCII kept>`."""
    return f"{stem} {stage}: {json.dumps(detail, ensure_ascii=False, sort_keys=True)}"


def final_line(record: Mapping[str, Any]) -> str:
    """`<stem> final: winner=<w> decided_by=<d>` (`None` for a missing preview, as classic)."""
    return f"{record['stem']} final: winner={record['winner']} decided_by={record['detail'].get('decided_by')}"
