"""VLM replies and call plan: parse-or-repair, fallbacks, schemas (judge.md §4, §5), the calls
of each step and the per-attempt temperature/seed/backoff rules."""

from __future__ import annotations

import pytest

from runner404.judge.calls import (
    PROMPT,
    ImageRef,
    all_failed_message,
    attempt_failed_message,
    attempts,
    calls_for,
    request_params,
)
from runner404.judge.replies import (
    FALLBACKS,
    SCHEMAS,
    ReplyError,
    candidates,
    fallback_for,
    is_json_failed,
    parse_reply,
    schema_of,
)
from runner404.judge.rules import preset, rules_from

CLASSIC, VALIDATOR = preset("404-cli"), preset("validator")
PENALTY = '{"penalty_1": 3, "penalty_2": 6, "issues": "B lacks legs"}'


# ---------------------------------------------------------------------------------------------
# parse_reply

def test_plain_json():
    assert parse_reply(PENALTY, "Penalty") == {"penalty_1": 3, "penalty_2": 6, "issues": "B lacks legs"}


def test_fenced_json_with_prose():
    text = f"Here is my verdict:\n```json\n{PENALTY}\n```\nHope this helps."
    assert parse_reply(text, "Penalty")["penalty_2"] == 6
    assert parse_reply(f"```\n{PENALTY}\n```", "Penalty")["penalty_1"] == 3


def test_prose_around_json_uses_first_to_last_brace():
    text = 'I think {"verdict": "garbage", "reason": "the back is empty"} is right.'
    assert parse_reply(text, "SideGuard") == {"verdict": "garbage", "reason": "the back is empty"}


def test_trailing_commas_are_removed():
    text = '{"checks": [{"feature": "4 legs", "match": "yes", "note": "all there",},], "main_object_correct": true,}'
    assert parse_reply(text, "Verification") == {
        "checks": [{"feature": "4 legs", "match": "yes", "note": "all there"}], "main_object_correct": True}


@pytest.mark.parametrize("value, expected", [
    ('"3.5"', 4), ("2.5", 2), ("3.5", 4), ('"7"', 7), ("4.0", 4), ("-0.4", 0), ("11.6", 12)])
def test_integer_fields_are_rounded_half_to_even(value, expected):
    text = f'{{"penalty_1": {value}, "penalty_2": 1, "issues": ""}}'
    reply = parse_reply(text, "Penalty")
    assert reply["penalty_1"] == expected and type(reply["penalty_1"]) is int


def test_penalties_are_not_clamped():
    assert parse_reply('{"penalty_1": 14, "penalty_2": -2, "issues": "x"}', "Penalty")["penalty_1"] == 14


def test_extra_keys_are_dropped_at_every_level():
    text = ('{"main_object": "chair", "confidence": 0.9, "features": ['
            + ", ".join('{"description": "f%d", "category": "count", "weight": 1}' % i for i in range(4)) + "]}")
    parsed = parse_reply(text, "Checklist")
    assert set(parsed) == {"main_object", "features"}
    assert parsed["features"][0] == {"description": "f0", "category": "count"}


@pytest.mark.parametrize("text, schema", [
    ("", "Penalty"),
    (None, "Penalty"),
    ("I cannot answer that.", "Penalty"),
    ('{"penalty_1": "high", "penalty_2": 1, "issues": ""}', "Penalty"),
    ('{"penalty_1": true, "penalty_2": 1, "issues": ""}', "Penalty"),
    ('{"penalty_1": 1, "issues": ""}', "Penalty"),
    ('{"verdict": "maybe", "reason": "?"}', "SideGuard"),
    ('{"main_object": "chair", "features": [{"description": "a", "category": "shape"}]}', "Checklist"),
    ('{"checks": [{"feature": "a", "match": "sort of", "note": ""}], "main_object_correct": true}', "Verification"),
    ('{"checks": [], "main_object_correct": "yes"}', "Verification"),
    ('{"issues": 3}', "Issues"),
    ("[1, 2, 3]", "Issues"),
    ("{not json at all}", "Issues"),
])
def test_garbage_raises_reply_error(text, schema):
    with pytest.raises(ReplyError, match="Unparseable VLM response"):
        parse_reply(text, schema)


def test_reply_error_is_a_value_error_and_quotes_the_text():
    with pytest.raises(ValueError, match="'nope'"):
        parse_reply("nope", "Issues")


def test_candidates_are_ordered_and_deduplicated():
    text = '  note ```json\n{"a": 1}\n``` and {"b": 2}  '
    assert candidates(text) == ['note ```json\n{"a": 1}\n``` and {"b": 2}', '{"a": 1}', '{"a": 1}\n``` and {"b": 2}']
    assert candidates('{"a": 1}') == ['{"a": 1}']
    assert candidates("   ") == []


def test_schema_given_as_a_dict():
    assert parse_reply('{"issues": "x"}', SCHEMAS["Issues"]) == {"issues": "x"}
    with pytest.raises(ValueError, match="unknown response model 'Nope'"):
        schema_of("Nope")


def test_neutral_fallbacks():
    assert fallback_for("Penalty") == {"penalty_1": 5, "penalty_2": 5, "issues": "JSON_PARSE_FAILED"}
    assert fallback_for("SideGuard") == {"verdict": "ok", "reason": "JSON_PARSE_FAILED"}
    assert fallback_for("Issues") == {"issues": ""}
    assert fallback_for("Checklist") is None and fallback_for("Verification") is None
    fresh = fallback_for("Penalty")
    fresh["penalty_1"] = 0
    assert FALLBACKS["Penalty"]["penalty_1"] == 5  # a copy
    assert is_json_failed(fallback_for("Penalty")) and not is_json_failed({"issues": "fine"})


def test_schemas_are_shaped_like_the_upstream_models():
    assert SCHEMAS["Penalty"] == {
        "properties": {"penalty_1": {"title": "Penalty 1", "type": "integer"},
                       "penalty_2": {"title": "Penalty 2", "type": "integer"},
                       "issues": {"title": "Issues", "type": "string"}},
        "required": ["penalty_1", "penalty_2", "issues"], "title": "PenaltyResponse", "type": "object"}
    checklist = SCHEMAS["Checklist"]
    assert checklist["properties"]["features"]["minItems"] == 4
    assert checklist["properties"]["features"]["maxItems"] == 7
    assert checklist["$defs"]["ChecklistItem"]["properties"]["category"]["enum"] == [
        "count", "shape", "presence", "material_color"]
    assert SCHEMAS["Verification"]["$defs"]["VerifyItem"]["properties"]["match"]["enum"] == ["yes", "partial", "no"]
    assert SCHEMAS["SideGuard"]["properties"]["verdict"]["enum"] == ["ok", "garbage"]
    assert SCHEMAS["Issues"]["required"] == ["issues"]


# ---------------------------------------------------------------------------------------------
# attempts

def test_attempt_temperatures_seeds_and_backoff():
    [call] = calls_for("s2cl_decompose", CLASSIC, 1000)
    plan = attempts(call, CLASSIC)
    assert [a.k for a in plan] == [0, 1, 2, 3, 4]
    assert [a.temperature for a in plan] == pytest.approx([0.0, 0.15, 0.20, 0.25, 0.30])
    assert plan[0].temperature == 0.0
    assert [a.seed for a in plan] == [1100, 1101, 1102, 1103, 1104]   # base + k + 100
    assert [a.backoff for a in plan] == [0.5, 1.0, 1.5, 2.0, 0.0]      # no sleep after the last


def test_attempts_follow_each_calls_budget():
    [explain] = calls_for("explain", CLASSIC, 7)
    assert [a.seed for a in attempts(explain, CLASSIC)] == [107, 108, 109]
    s4 = calls_for("s4", CLASSIC, 7)[0]
    assert len(attempts(s4, CLASSIC)) == 4


def test_vlm_max_retries_override_applies_to_every_call():
    rules = rules_from({"vlm": {"max_retries": 2}})
    for stage in ("explain", "s1", "s2ac", "s2cl_decompose", "s2cl_verify", "s3", "s4"):
        assert {call.max_retries for call in calls_for(stage, rules, 0)} == {2}


def test_request_params():
    call = calls_for("s1", CLASSIC, 42)[1]
    params = request_params(call, attempts(call, CLASSIC)[2], rules_from({"vlm": {"model": "m"}}))
    assert params == {
        "model": "m", "temperature": pytest.approx(0.2), "seed": 144, "max_tokens": 1024,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "s1_prompt_match-response", "schema": SCHEMAS["Penalty"]}}}


def test_failure_messages():
    call = calls_for("s3", CLASSIC, 0)[1]
    error = ValueError("x" * 300)
    message = attempt_failed_message(call, attempts(call, CLASSIC)[1], error)
    assert message == "s3_gray_ba: attempt 2/5 failed: ValueError: " + "x" * 160
    assert all_failed_message(call) == "s3_gray_ba: all 5 attempts failed; falling back to neutral"


# ---------------------------------------------------------------------------------------------
# the plan (judge.md §5 table)

def _summary(calls):
    return [(c.label, c.schema_name, c.response, c.seed_base, c.max_tokens, c.max_retries, c.order, c.view,
             c.images) for c in calls]


def test_explain_call():
    [call] = calls_for("explain", CLASSIC, 42)
    assert _summary([call]) == [("explain", "explain-response", "Issues", 42, 300, 3, None, None,
                                 (PROMPT, ImageRef("A", "grid.png"), ImageRef("B", "grid.png")))]
    assert call.fallback == {"issues": ""}
    assert call.schema == SCHEMAS["Issues"]


def test_s1_calls_ab_then_ba_per_angle():
    calls = calls_for("s1", CLASSIC, 42)
    assert len(calls) == 8
    front_ab, front_ba = calls[:2]
    assert front_ab.images == (PROMPT, ImageRef("A", "white/front.png"), ImageRef("B", "white/front.png"))
    assert front_ba.images == (PROMPT, ImageRef("B", "white/front.png"), ImageRef("A", "white/front.png"))
    assert [(c.view, c.order) for c in calls] == [
        (v, o) for v in ("front", "front_left", "front_right", "front_above") for o in ("AB", "BA")]
    assert {(c.label, c.seed_base, c.max_tokens, c.max_retries) for c in calls} == {("s1_prompt_match", 42, 1024, 5)}
    assert calls[2].angle_description == "slightly left of the front"
    assert all(c.fallback == fallback_for("Penalty") for c in calls)
    assert [c.view for c in calls_for("s1", VALIDATOR, 0)][4:6] == ["front_below", "front_below"]


def test_s2_best_view_calls():
    calls = calls_for("s2bv", CLASSIC, 42, best_views=("front_left", "back"))
    assert _summary(calls) == [
        ("s2bv_ab", "s2bv_ab-response", "Penalty", 42, 1024, 5, "AB", "front_left|back",
         (PROMPT, ImageRef("A", "white/front_left.png"), ImageRef("B", "white/back.png"))),
        ("s2bv_ba", "s2bv_ba-response", "Penalty", 42, 1024, 5, "BA", "front_left|back",
         (PROMPT, ImageRef("B", "white/back.png"), ImageRef("A", "white/front_left.png"))),
    ]
    with pytest.raises(ValueError, match="best_views"):
        calls_for("s2bv", CLASSIC, 42)


def test_s2_artifact_compare_calls():
    calls = calls_for("s2ac", CLASSIC, 42)
    assert [(c.label, c.seed_base, c.order, c.images[1]) for c in calls] == [
        ("s2ac_ab", 42, "AB", ImageRef("A", "grid.png")), ("s2ac_ba", 42, "BA", ImageRef("B", "grid.png"))]


def test_s2_checklist_calls():
    [decompose] = calls_for("s2cl_decompose", CLASSIC, 42)
    assert _summary([decompose]) == [("s2cl_decompose", "s2cl_decompose-response", "Checklist", 42, 400, 5, None,
                                      None, (PROMPT,))]
    assert decompose.fallback is None
    verify = calls_for("s2cl_verify", CLASSIC, 42)
    assert _summary(verify) == [
        ("s2cl_verify", "s2cl_verify-response", "Verification", 142, 600, 5, "A", None,
         (PROMPT, ImageRef("A", "grid.png"))),
        ("s2cl_verify", "s2cl_verify-response", "Verification", 242, 600, 5, "B", None,
         (PROMPT, ImageRef("B", "grid.png"))),
    ]
    assert all(c.fallback is None for c in verify)


def test_s3_calls():
    calls = calls_for("s3", CLASSIC, 42)
    assert _summary(calls) == [
        ("s3_gray_ab", "s3_gray_ab-response", "Penalty", 42, 1024, 5, "AB", None,
         (PROMPT, ImageRef("A", "gray/front.png"), ImageRef("B", "gray/front.png"))),
        ("s3_gray_ba", "s3_gray_ba-response", "Penalty", 49, 1024, 5, "BA", None,
         (PROMPT, ImageRef("B", "gray/front.png"), ImageRef("A", "gray/front.png"))),
    ]
    assert {c.angle_description for c in calls} == {"the front"}
    validator = calls_for("s3", VALIDATOR, 42)
    assert validator[0].images[1] == ImageRef("A", "gray/front_left.png")
    assert validator[0].angle_description == "slightly left of the front"


def test_s4_calls():
    calls = calls_for("s4", CLASSIC, 42)
    assert [(c.order, c.view, c.seed_base) for c in calls] == [
        ("A", "right", 5042), ("A", "back", 5142), ("A", "left", 5242), ("A", "top_down", 5342),
        ("B", "right", 6042), ("B", "back", 6142), ("B", "left", 6242), ("B", "top_down", 6342)]
    assert calls[1].images == (ImageRef("A", "white/front.png"), ImageRef("A", "white/back.png"))
    assert calls[3].angle_description == "directly above (top-down)"
    assert {(c.label, c.schema_name, c.max_tokens, c.max_retries) for c in calls} == {
        ("s4_per_angle", "s4_per_angle-response", 220, 4)}
    assert calls[0].fallback == {"verdict": "ok", "reason": "JSON_PARSE_FAILED"}
    assert calls_for("s4", VALIDATOR, 0)[0].images[0] == ImageRef("A", "white/front_left.png")


def test_response_format():
    call = calls_for("s4", CLASSIC, 0)[0]
    assert call.response_format() == {
        "type": "json_schema", "json_schema": {"name": "s4_per_angle-response", "schema": SCHEMAS["SideGuard"]}}


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown judge stage 's5'"):
        calls_for("s5", CLASSIC, 0)


def test_full_call_budget_is_26():
    counts = {stage: len(calls_for(stage, CLASSIC, 0, best_views=("front", "front")))
              for stage in ("explain", "s1", "s2bv", "s2ac", "s2cl_decompose", "s2cl_verify", "s3", "s4")}
    assert counts == {"explain": 1, "s1": 8, "s2bv": 2, "s2ac": 2, "s2cl_decompose": 1, "s2cl_verify": 2,
                      "s3": 2, "s4": 8}
    assert sum(counts.values()) == 26
