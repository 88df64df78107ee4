"""S3 gray-background gate statistics on synthetic PNGs, and S3's choice (judge.md §7.3)."""

from __future__ import annotations

import pytest

from judge_fixtures import (
    BACKGROUND,
    DARK_GRAY,
    FAILED,
    PALE_GRAY,
    SATURATED,
    image_png,
    pen,
    raw_png,
    sampled_png,
)
from runner404 import png
from runner404.judge import duel as D
from runner404.judge.rules import preset, rules_from

CLASSIC, VALIDATOR = preset("404-cli"), preset("validator")
EMPTY = sampled_png([])


def test_pale_grayish_foreground_fires():
    gate = D.gray_stats(image_png(PALE_GRAY), image_png(PALE_GRAY), CLASSIC)
    assert (gate.fired, gate.reason, gate.code, gate.error) == (True, "gate fired", "decided", None)
    # 16x16 images, every 4th row and column: 16 samples each, the top half is foreground
    assert gate.stats == D.GrayStats(16, 1.0, 1.0, pytest.approx(0.2126 * 220 + 0.7152 * 220 + 0.0722 * 222))


def test_saturated_foreground_does_not_fire():
    gate = D.gray_stats(image_png(SATURATED), image_png(SATURATED), CLASSIC)
    assert (gate.fired, gate.reason, gate.code) == (False, "gate did not fire", "gate_not_fired")
    assert (gate.stats.foreground_samples, gate.stats.pale_fraction, gate.stats.grayish_fraction) == (16, 0.0, 0.0)


def test_dark_gray_foreground_is_grayish_but_not_pale():
    gate = D.gray_stats(image_png(DARK_GRAY), image_png(DARK_GRAY), CLASSIC)
    assert not gate.fired
    assert (gate.stats.pale_fraction, gate.stats.grayish_fraction) == (0.0, 1.0)


def test_statistics_are_pooled_over_both_images():
    gate = D.gray_stats(image_png(PALE_GRAY, fraction=0.25), image_png(SATURATED, fraction=0.5), CLASSIC)
    assert gate.stats.foreground_samples == 4 + 8
    assert gate.stats.pale_fraction == pytest.approx(4 / 12)
    assert gate.stats.grayish_fraction == pytest.approx(4 / 12)
    assert not gate.fired


def test_pale_fraction_threshold_is_inclusive():
    at = D.gray_stats(sampled_png([DARK_GRAY] * 9 + [PALE_GRAY]), EMPTY, CLASSIC)
    assert at.stats.pale_fraction == pytest.approx(0.10) and at.fired
    below = D.gray_stats(sampled_png([DARK_GRAY] * 10 + [PALE_GRAY]), EMPTY, CLASSIC)
    assert below.stats.pale_fraction == pytest.approx(1 / 11) and not below.fired


def test_grayish_fraction_threshold_is_inclusive():
    at = D.gray_stats(sampled_png([PALE_GRAY] * 6 + [SATURATED] * 4), EMPTY, CLASSIC)
    assert at.stats.grayish_fraction == pytest.approx(0.60) and at.fired
    below = D.gray_stats(sampled_png([PALE_GRAY] * 5 + [SATURATED] * 4), EMPTY, CLASSIC)
    assert not below.fired


def test_pale_needs_bright_and_low_saturation():
    # luma just above 175 with saturation 0.30: pale (< 0.35) but not grayish (>= 0.28)
    warm = (230, 175, 161)
    gate = D.gray_stats(sampled_png([warm]), EMPTY, CLASSIC)
    assert (gate.stats.pale_fraction, gate.stats.grayish_fraction) == (1.0, 0.0)
    dim = (175, 175, 175)   # luma exactly 175 is not pale
    assert D.gray_stats(sampled_png([dim]), EMPTY, CLASSIC).stats.pale_fraction == 0.0


def test_background_tolerance_is_max_channel_distance():
    inside = (146, 110, 128)   # every channel within 18 of 128
    outside = (147, 128, 128)  # 19 away on one channel
    assert D.gray_stats(sampled_png([inside] * 3), EMPTY, CLASSIC).stats.foreground_samples == 0
    assert D.gray_stats(sampled_png([outside] * 3), EMPTY, CLASSIC).stats.foreground_samples == 3
    looser = rules_from({"s3": {"background_tolerance": 19}})
    assert D.gray_stats(sampled_png([outside] * 3), EMPTY, looser).stats.foreground_samples == 0


def test_no_foreground_gives_zero_fractions():
    gate = D.gray_stats(png.solid(8, 8, BACKGROUND), png.solid(8, 8, BACKGROUND), CLASSIC)
    assert gate.stats == D.GrayStats(0, 0.0, 0.0, 0.0) and not gate.fired


def test_only_sampled_pixels_count():
    # every unsampled pixel is saturated red; the sampled ones are pale gray
    gate = D.gray_stats(sampled_png([PALE_GRAY] * 16, filler=SATURATED), EMPTY, CLASSIC)
    assert gate.fired and gate.stats.grayish_fraction == 1.0
    every_pixel = rules_from({"s3": {"sample_step": 1}})
    assert not D.gray_stats(sampled_png([PALE_GRAY] * 16, filler=SATURATED), EMPTY, every_pixel).fired


def test_rgba_is_read_as_rgb():
    gate = D.gray_stats(sampled_png([PALE_GRAY] * 4, channels=4), sampled_png([], channels=4), CLASSIC)
    assert gate.fired and gate.stats.foreground_samples == 4


def test_black_pixels_have_zero_saturation():
    gate = D.gray_stats(sampled_png([(0, 0, 0)]), EMPTY, CLASSIC)
    assert gate.stats.grayish_fraction == 1.0


@pytest.mark.parametrize("data, message", [
    (raw_png(4, 4, depth=16, colour=2, row_bytes=24), "bit depth 16"),
    (raw_png(4, 4, depth=8, colour=3, row_bytes=4, extra_chunks=((b"PLTE", bytes(3)),)), "colour type 3"),
    (raw_png(4, 4, depth=8, colour=0, row_bytes=4), "colour type 0"),
    (raw_png(4, 4, depth=8, colour=2, row_bytes=12, interlace=1), "interlace 1"),
    (b"GIF89a not a png", "not a PNG file"),
    (image_png(PALE_GRAY)[:40], "PNG"),
])
def test_unsupported_pngs_do_not_fire(data, message):
    gate = D.gray_stats(data, image_png(PALE_GRAY), CLASSIC)
    assert (gate.fired, gate.reason, gate.code, gate.stats) == (False, "stats parse failed", "stats_parse_failed", None)
    assert gate.error.startswith("A: ") and message in gate.error
    assert D.gray_stats(image_png(PALE_GRAY), data, CLASSIC).error.startswith("B: ")


def test_unavailable_gray_images():
    gate = D.gate_unavailable("white/front.png missing")
    assert (gate.fired, gate.reason, gate.code, gate.error) == (
        False, "gray PNGs unavailable", "gray_images_unavailable", "white/front.png missing")


# ---------------------------------------------------------------------------------------------
# S3 choice

FIRED = D.GateResult(True, D.GATE_FIRED, D.GrayStats(10, 0.5, 0.9, 200.0))
NOT_FIRED = D.GateResult(False, D.GATE_NOT_FIRED, D.GrayStats(10, 0.0, 0.1, 90.0))


@pytest.mark.parametrize("gate, reason", [
    (NOT_FIRED, "gate_not_fired"),
    (D.GateResult(False, D.GATE_PARSE_FAILED, error="A: bad"), "stats_parse_failed"),
    (D.gate_unavailable(), "gray_images_unavailable"),
])
def test_s3_without_gate(gate, reason):
    s3 = D.decide_s3(gate, None, None, CLASSIC)
    assert (s3.fired, s3.choice, s3.reason) == (False, None, reason)
    assert s3.record(CLASSIC) == {"fired": False, "choice": None, "reason": reason}
    assert s3.record(VALIDATOR) == {"fired": False, "choice": None}


@pytest.mark.parametrize("ab, ba, choice, reason", [
    (pen(2, 6), pen(6, 2), "A", "decided"),
    (pen(7, 3), pen(2, 8), "B", "decided"),
    (pen(4, 6), pen(6, 4), "A", "decided"),          # |diff| = 2.0 exactly is enough
    (pen(4, 5), pen(5, 4), None, "small_difference"),
    (pen(2, 6), pen(2, 6), None, "contradictory"),   # each order prefers model 1
    (FAILED, pen(9, 1), None, "json_failed"),
])
def test_s3_choice_classic(ab, ba, choice, reason):
    s3 = D.decide_s3(FIRED, ab, ba, CLASSIC)
    assert (s3.fired, s3.choice, s3.reason) == (True, choice, reason)
    assert s3.record(CLASSIC) == {"fired": True, "choice": choice, "reason": reason}


def test_s3_json_failure_in_the_validator_preset():
    # production only blocks on contradiction or a small gap: pen_a 3, pen_b 7
    s3 = D.decide_s3(FIRED, FAILED, pen(9, 1), VALIDATOR)
    assert (s3.choice, s3.reason, s3.json_failed, s3.pen_a, s3.pen_b) == ("A", "decided", True, 3.0, 7.0)
    assert s3.record(VALIDATOR) == {"fired": True, "choice": "A"}
    assert D.decide_s3(FIRED, FAILED, FAILED, VALIDATOR).reason == "small_difference"


def test_s3_decision_gap_override():
    assert D.decide_s3(FIRED, pen(4, 5), pen(5, 4), rules_from({"s3": {"decision_gap": 1}})).choice == "A"


def test_fired_gate_needs_both_replies():
    with pytest.raises(ValueError, match="AB and BA"):
        D.decide_s3(FIRED, pen(1, 2), None, CLASSIC)
