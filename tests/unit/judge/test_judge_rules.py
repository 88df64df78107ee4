"""Judge rules: presets (judge.md §9), manifest overrides, required files (§3, D21)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from runner404.judge.rules import (
    Angle,
    SideView,
    describe_view,
    preset,
    required_files,
    rules_from,
)

ROOT = Path(__file__).resolve().parents[3]


def test_default_is_the_classic_preset():
    assert rules_from(None) == preset("404-cli") == rules_from("404-cli") == rules_from({})
    assert rules_from({"preset": "validator"}) == preset("validator")


def test_classic_preset_values():
    rules = preset("404-cli")
    assert [(a.label, a.weight, a.description) for a in rules.s1.angles] == [
        ("front", 2.0, "the front"),
        ("front_left", 1.5, "slightly left of the front"),
        ("front_right", 1.5, "slightly right of the front"),
        ("front_above", 1.3, "the front, from slightly above"),
    ]
    s1, s2, s3, s4 = rules.s1, rules.s2, rules.s3, rules.s4
    assert (s1.draw_threshold, s1.both_bad_average, s1.both_bad_difference) == (0.7, 8.0, 1.5)
    assert (s1.split_consistency, s1.split_min_angles) == (0.50, 3)
    assert (s2.vote_penalty_gap, s2.vote_checklist_gap, s2.strong_best_view_gap, s2.strong_checklist_gap) == (
        1.0, 2, 2.5, 7)
    assert (s2.checklist_decision_gap, s2.consensus_min_votes, s2.main_object_bonus) == (2, 2, 3)
    assert [s2.match_score(m) for m in ("yes", "partial", "no", "maybe")] == [2, 1, 0, 0]
    assert s2.verify_seed_offsets == (100, 200) and s2.best_view is True
    assert (s3.image, s3.pale_fraction, s3.grayish_fraction, s3.background_tolerance, s3.sample_step,
            s3.decision_gap) == ("gray/front.png", 0.10, 0.60, 18, 4, 2.0)
    assert (s3.background_rgb, s3.grayish_saturation, s3.pale_luma, s3.pale_saturation) == (
        (128, 128, 128), 0.28, 175.0, 0.35)
    assert (s3.angle_description, s3.seed_offsets, s3.json_failure_blocks_choice) == ("the front", (0, 7), True)
    assert s4.reference_view == "front" and s4.garbage_votes == 3
    assert s4.views == (SideView("right", "the right side"), SideView("back", "the back"),
                        SideView("left", "the left side"), SideView("top_down", "directly above (top-down)"))
    assert (s4.seed_offsets, s4.seed_step) == ((5000, 6000), 100)
    vlm = rules.vlm
    assert (vlm.model, vlm.max_retries, vlm.timeout) == ("glm-4.6v-flash", None, 600.0)
    assert (vlm.first_temperature, vlm.retry_temperature_base, vlm.retry_temperature_step) == (0.0, 0.1, 0.05)
    assert (vlm.attempt_seed_offset, vlm.backoff_seconds, vlm.failure_marker) == (100, 0.5, "JSON_PARSE_FAILED")
    layout = rules.layout
    assert (layout.arrow, layout.s1_reason, layout.s2_votes, layout.s3_when_s2_decided, layout.s3_reason,
            layout.elapsed_seconds, layout.missing_files) == ("->", True, True, False, True, True, True)


def test_validator_preset_differs_only_where_judge_md_says():
    classic, validator = preset("404-cli"), preset("validator")
    assert [(a.label, a.weight) for a in validator.s1.angles] == [
        ("front_left", 1.0), ("front_right", 1.0), ("front_below", 1.0), ("front_above", 1.0)]
    assert validator.s1.angles[2].description == "the front, from slightly below"
    assert validator.s1.split_consistency == 0.65
    assert (validator.s2.strong_best_view_gap, validator.s2.strong_checklist_gap) == (2.0, 6)
    assert validator.s3.image == "gray/front_left.png"
    assert validator.s3.angle_description == "slightly left of the front"
    assert validator.s3.json_failure_blocks_choice is False
    assert validator.s4.reference_view == "front_left"
    assert validator.vlm == classic.vlm
    layout = validator.layout
    assert (layout.arrow, layout.s1_reason, layout.s2_votes, layout.s3_when_s2_decided, layout.s3_reason,
            layout.elapsed_seconds, layout.missing_files) == ("→", False, False, False, False, False, False)
    # everything else is shared
    assert validator.s1.draw_threshold == classic.s1.draw_threshold
    assert validator.s2.vote_penalty_gap == classic.s2.vote_penalty_gap
    assert validator.s3.pale_fraction == classic.s3.pale_fraction
    assert validator.s4.views == classic.s4.views and validator.s4.garbage_votes == 3
    assert validator.vlm.calls == classic.vlm.calls


def test_call_table_matches_judge_md_section_5():
    calls = preset("404-cli").vlm.calls
    table = {name: (rule.labels, rule.response, rule.max_tokens, rule.max_retries, rule.fallback)
             for name, rule in vars(calls).items()}
    assert table == {
        "explain": (("explain",), "Issues", 300, 3, True),
        "s1": (("s1_prompt_match",), "Penalty", 1024, 5, True),
        "s2bv": (("s2bv_ab", "s2bv_ba"), "Penalty", 1024, 5, True),
        "s2ac": (("s2ac_ab", "s2ac_ba"), "Penalty", 1024, 5, True),
        "s2cl_decompose": (("s2cl_decompose",), "Checklist", 400, 5, False),
        "s2cl_verify": (("s2cl_verify",), "Verification", 600, 5, False),
        "s3": (("s3_gray_ab", "s3_gray_ba"), "Penalty", 1024, 5, True),
        "s4": (("s4_per_angle",), "SideGuard", 220, 4, True),
    }


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown judge rules preset 'valdator'"):
        rules_from("valdator")
    with pytest.raises(ValueError, match="unknown judge rules preset 'x'"):
        rules_from({"preset": "x"})


def test_every_schema_override_key_is_accepted():
    spec = {
        "preset": "validator",
        "s1": {"angles": [{"label": "front", "weight": 3}, {"label": "back_left", "weight": 0.5}],
               "draw_threshold": 1, "both_bad_average": 7.5, "both_bad_difference": 2,
               "split_consistency": 0.4, "split_min_angles": 2},
        "s2": {"vote_penalty_gap": 1.5, "vote_checklist_gap": 3, "strong_best_view_gap": 3,
               "strong_checklist_gap": 8, "best_view": False},
        "s3": {"image": "gray/front.png", "pale_fraction": 0.2, "grayish_fraction": 0.5,
               "background_tolerance": 10, "sample_step": 2, "decision_gap": 1.5},
        "s4": {"reference_view": "front", "views": ["back", "left"], "garbage_votes": 2},
        "vlm": {"model": "other-vlm", "max_retries": 2, "timeout": "2m"},
    }
    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    rules_schema = {**schema["$defs"]["stage_judge"]["properties"]["rules"], "$defs": schema["$defs"]}
    jsonschema.validate(spec, rules_schema)  # the manifest schema accepts the same spec

    rules = rules_from(spec)
    assert rules.preset == "validator"
    assert rules.s1.angles == (Angle("front", 3.0, "the front"), Angle("back_left", 0.5, "the back left view"))
    assert (rules.s1.draw_threshold, rules.s1.both_bad_average, rules.s1.both_bad_difference) == (1.0, 7.5, 2.0)
    assert (rules.s1.split_consistency, rules.s1.split_min_angles) == (0.4, 2)
    s2 = rules.s2
    assert (s2.vote_penalty_gap, s2.vote_checklist_gap, s2.strong_best_view_gap, s2.strong_checklist_gap,
            s2.best_view) == (1.5, 3, 3.0, 8, False)
    s3 = rules.s3
    assert (s3.image, s3.pale_fraction, s3.grayish_fraction, s3.background_tolerance, s3.sample_step,
            s3.decision_gap) == ("gray/front.png", 0.2, 0.5, 10, 2, 1.5)
    assert s3.angle_description == "the front"  # follows the image
    assert rules.s4.reference_view == "front"
    assert [v.label for v in rules.s4.views] == ["back", "left"] and rules.s4.garbage_votes == 2
    assert (rules.vlm.model, rules.vlm.max_retries, rules.vlm.timeout) == ("other-vlm", 2, 120.0)
    # untouched values keep the preset's
    assert rules.s3.json_failure_blocks_choice is False and rules.layout.arrow == "→"


def test_override_leaves_other_values():
    rules = rules_from({"s1": {"draw_threshold": 0.5}})
    assert rules.s1.draw_threshold == 0.5
    assert rules.s1.angles == preset("404-cli").s1.angles
    assert rules.s2 == preset("404-cli").s2


@pytest.mark.parametrize("spec, key", [
    ({"s5": {}}, "'s5'"),
    ({"rules": "x"}, "'rules'"),
    ({"s1": {"threshold": 1}}, "'s1.threshold'"),
    ({"s2": {"strong_bv_gap": 1}}, "'s2.strong_bv_gap'"),
    ({"s3": {"gray_image": "x"}}, "'s3.gray_image'"),
    ({"s4": {"k": 2}}, "'s4.k'"),
    ({"vlm": {"temperature": 0.2}}, "'vlm.temperature'"),
    ({"s1": {"angles": [{"label": "front", "weight": 1, "theta": 0}]}}, r"'s1.angles\[0\].theta'"),
])
def test_unknown_override_keys_are_rejected_by_name(spec, key):
    with pytest.raises(ValueError, match=f"unknown judge rules key {key}"):
        rules_from(spec)


@pytest.mark.parametrize("spec, message", [
    ({"s1": {"draw_threshold": "big"}}, "s1.draw_threshold: expected a number"),
    ({"s1": {"draw_threshold": True}}, "s1.draw_threshold: expected a number"),
    ({"s1": {"both_bad_average": -1}}, "s1.both_bad_average: must not be negative"),
    ({"s1": {"split_consistency": 1.5}}, "s1.split_consistency: must be between 0 and 1"),
    ({"s1": {"split_min_angles": 0}}, "s1.split_min_angles: must be at least 1"),
    ({"s1": {"angles": []}}, "s1.angles: expected a non-empty list"),
    ({"s1": {"angles": [{"label": "front"}]}}, r"s1.angles\[0\]: needs both"),
    ({"s1": {"angles": [{"label": "front", "weight": 0}]}}, r"s1.angles\[0\].weight: must be positive"),
    ({"s1": {"angles": ["front"]}}, r"s1.angles\[0\]: expected an object"),
    ({"s2": {"vote_checklist_gap": 2.5}}, "s2.vote_checklist_gap: expected an integer"),
    ({"s2": {"best_view": "yes"}}, "s2.best_view: expected true or false"),
    ({"s3": {"image": ""}}, "s3.image: expected a non-empty string"),
    ({"s3": {"background_tolerance": 256}}, "s3.background_tolerance: must be at most 255"),
    ({"s3": {"sample_step": 0}}, "s3.sample_step: must be at least 1"),
    ({"s4": {"views": []}}, "s4.views: expected a non-empty list"),
    ({"s4": {"garbage_votes": 0}}, "s4.garbage_votes: must be at least 1"),
    ({"vlm": {"max_retries": 21}}, "vlm.max_retries: must be at most 20"),
    ({"vlm": {"timeout": "soon"}}, "vlm.timeout: expected a duration"),
    ({"vlm": {"timeout": True}}, "vlm.timeout: expected a duration"),
    ({"vlm": {"timeout": -5}}, "vlm.timeout: must not be negative"),
    ({"s1": "strict"}, "s1: expected an object"),
    ({"preset": 3}, "preset: expected a preset name"),
])
def test_badly_typed_overrides(spec, message):
    with pytest.raises(ValueError, match=message):
        rules_from(spec)


def test_rules_spec_must_be_a_name_or_an_object():
    with pytest.raises(ValueError, match="expected a preset name or an object"):
        rules_from(["404-cli"])  # type: ignore[arg-type]


def test_timeout_accepts_seconds_and_units():
    assert rules_from({"vlm": {"timeout": 90}}).vlm.timeout == 90.0
    assert rules_from({"vlm": {"timeout": "500ms"}}).vlm.timeout == 0.5


def test_describe_view():
    assert describe_view("top_down") == "directly above (top-down)"
    assert describe_view("front_below") == "the front, from slightly below"
    assert describe_view("back_left") == "the back left view"


def test_required_files_per_preset():
    assert required_files(preset("404-cli")) == [
        "grid.png", "white/front.png", "white/front_left.png", "white/front_right.png", "white/front_above.png",
        "white/right.png", "white/back.png", "white/left.png", "white/top_down.png", "gray/front.png"]
    assert required_files(preset("validator")) == [
        "grid.png", "white/front_left.png", "white/front_right.png", "white/front_below.png",
        "white/front_above.png", "white/right.png", "white/back.png", "white/left.png", "white/top_down.png",
        "gray/front_left.png"]


def test_required_files_follow_overrides():
    rules = rules_from({"s1": {"angles": [{"label": "front", "weight": 1}]},
                        "s3": {"image": "gray/front_above.png"},
                        "s4": {"reference_view": "front_left", "views": ["back"]}})
    assert required_files(rules) == ["grid.png", "white/front.png", "white/front_left.png", "white/back.png",
                                     "gray/front_above.png"]


def test_required_files_match_the_render_view_sets():
    from runner404.views import stem_files, view_sets
    for name in ("404-cli", "validator"):
        rendered = set(stem_files(view_sets(name)))
        assert set(required_files(preset(name))) <= rendered


def test_the_typo_fixture_is_rejected_naming_the_key():
    import yaml
    manifest = yaml.safe_load((ROOT / "tests" / "fixtures" / "invalid" / "judge-rules-typo.yaml").read_text())
    with pytest.raises(ValueError, match="unknown judge rules key 's1.draw_treshold'"):
        rules_from(manifest["stages"]["duel"]["rules"])
