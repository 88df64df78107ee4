"""Final decisions, decided_by strings, missing previews and whole duel records (judge.md §3,
§7.5, §8, §9), played through the scripted driver in `judge_fixtures`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from judge_fixtures import (
    GARBAGE,
    OK,
    PALE_GRAY,
    Script,
    agreeing,
    image_png,
    pen,
    run_scripted_duel,
    s1_replies,
    side_guard,
    verification,
)
from runner404.judge import duel as D
from runner404.judge.rules import preset, required_files

CLASSIC, VALIDATOR = preset("404-cli"), preset("validator")
BOTH = pytest.mark.parametrize("rules", [CLASSIC, VALIDATOR], ids=["404-cli", "validator"])

EMBEDDINGS_A = {"prompt": [1.0, 0.0], "view_front_left": [0.9, 0.1], "view_back": [0.1, 0.9]}
EMBEDDINGS_B = {"prompt": [0.0, 1.0], "view_front_left": [0.9, 0.1], "view_back": [0.1, 0.9]}
ALL_YES = verification("yes", "yes", "yes", "yes")
ALL_NO = verification("no", "no", "no", "no", main_object_correct=False)


def s1_decided(rules):
    return Script(s1=s1_replies(rules, agreeing(2, 5)))


def strong_voter(rules):
    return Script(s1=s1_replies(rules, agreeing(4, 4)), embeddings_a=EMBEDDINGS_A, embeddings_b=EMBEDDINGS_B,
                  bv=(pen(2, 6), pen(6, 2)), verify_a=ALL_YES, verify_b=ALL_NO)


def consensus(rules):
    return Script(s1=s1_replies(rules, agreeing(4, 4)), ac=(pen(6, 3), pen(3, 6)),
                  verify_a=verification("yes", "yes", "partial", "no"), verify_b=ALL_YES)


def gray_rescue(rules):
    return Script(s1=s1_replies(rules, agreeing(4, 4)), embeddings_a=EMBEDDINGS_A, embeddings_b=EMBEDDINGS_B,
                  bv=(pen(4, 4), pen(4, 4)), gray_a=image_png(PALE_GRAY), gray_b=image_png(PALE_GRAY),
                  s3=(pen(2, 6), pen(6, 2)))


def gate_not_fired(rules):
    return Script(s1=s1_replies(rules, agreeing(4, 4)))


def gate_inconclusive(rules):
    return replace(gray_rescue(rules), s3=(pen(4, 5), pen(5, 4)))


def step_down_winner(rules):
    return replace(consensus(rules), s4_b=(GARBAGE, GARBAGE, GARBAGE, OK))


def step_down_draw(rules):
    return replace(gate_not_fired(rules), s4_a=(GARBAGE,))


def checklist_failed(rules):
    return replace(gate_not_fired(rules), decompose="I see a chair.")


def verify_failed(rules):
    return replace(gate_not_fired(rules), verify_b="{broken")


def missing_left_file(rules):
    files = [f for f in required_files(rules) if f != rules.s3.image]
    return replace(s1_decided(rules), files_left=files)


def no_right_folder(rules):
    return replace(s1_decided(rules), right_folder=False)


def no_previews(rules):
    return replace(s1_decided(rules), left_folder=False, files_right=["grid.png"])


SCENARIOS = {
    "s1_decided": (s1_decided, "left", "S1"),
    "s2_strong_voter": (strong_voter, "left", "S2 strong_voter [bv|-4.0|+cl|+11|]"),
    "s2_consensus": (consensus, "right", "S2 consensus"),
    "s3_gray_rescue": (gray_rescue, "left", "S3 gray-rescue"),
    "s3_gate_not_fired": (gate_not_fired, "draw", "S3 (gate did not fire) {arrow} draw"),
    "s3_gate_inconclusive": (gate_inconclusive, "draw", "S3 (gate did not fire) {arrow} draw"),
    "s4_step_down_winner": (step_down_winner, "draw", "S4 step-down (was B)"),
    "s4_step_down_draw": (step_down_draw, "right", "S4 step-down (was draw)"),
    "checklist_decompose_failed": (checklist_failed, "draw", "S3 (gate did not fire) {arrow} draw"),
    "checklist_verify_failed": (verify_failed, "draw", "S3 (gate did not fire) {arrow} draw"),
    "missing_left_file": (missing_left_file, "right", None),
    "no_right_folder": (no_right_folder, "left", None),
    "no_previews": (no_previews, "draw", None),
}


@BOTH
@pytest.mark.parametrize("name", SCENARIOS)
def test_scripted_duel_outcomes(rules, name):
    build, winner, decided_by = SCENARIOS[name]
    trace = run_scripted_duel(rules, build(rules))
    record = trace.record
    assert record["winner"] == winner
    assert record["detail"].get("decided_by") == (decided_by.format(arrow=rules.layout.arrow) if decided_by else None)
    json.dumps(record, ensure_ascii=False)   # serialisable as written to <stem>.json


@BOTH
@pytest.mark.parametrize("name", ["s1_decided", "s2_strong_voter", "s2_consensus", "s3_gray_rescue",
                                  "s3_gate_inconclusive", "s4_step_down_winner", "missing_left_file"])
def test_scripted_duel_records(rules, name, snapshot):
    """The `<stem>.json` text exactly as written (indent 2, non-ASCII kept, key order) and the log."""
    trace = run_scripted_duel(rules, SCENARIOS[name][0](rules))
    assert {"file": json.dumps(trace.record, indent=2, ensure_ascii=False), "log": trace.lines} == snapshot


def test_call_budgets():
    assert len(run_scripted_duel(CLASSIC, s1_decided(CLASSIC)).calls) == 9
    assert len(run_scripted_duel(CLASSIC, gray_rescue(CLASSIC)).calls) == 26
    assert len(run_scripted_duel(CLASSIC, gate_not_fired(CLASSIC)).calls) == 22   # BV abstains, S3 not fired
    assert len(run_scripted_duel(CLASSIC, no_previews(CLASSIC)).calls) == 0
    assert len(run_scripted_duel(CLASSIC, checklist_failed(CLASSIC)).calls) == 20  # no verify calls


def test_call_seeds_in_a_full_duel():
    trace = run_scripted_duel(CLASSIC, gray_rescue(CLASSIC), seed=1000)
    seeds = {(c.label, c.order, c.view): c.seed_base for c in trace.calls}
    assert seeds[("s2cl_verify", "A", None)] == 1100 and seeds[("s2cl_verify", "B", None)] == 1200
    assert seeds[("s3_gray_ab", "AB", None)] == 1000 and seeds[("s3_gray_ba", "BA", None)] == 1007
    assert seeds[("s4_per_angle", "B", "top_down")] == 7300
    assert seeds[("s2bv_ab", "AB", "front_left|back")] == 1000


# ---------------------------------------------------------------------------------------------
# detail layouts

@BOTH
def test_s1_decided_layout(rules):
    detail = run_scripted_duel(rules, s1_decided(rules)).record["detail"]
    assert list(detail) == ["s1", "decided_by", "issues"]
    assert detail["issues"] == "A is closer to the reference."


def test_full_layout_classic():
    record = run_scripted_duel(CLASSIC, gray_rescue(CLASSIC)).record
    assert list(record) == ["stem", "prompt_url", "winner", "detail"]
    detail = record["detail"]
    assert list(detail) == ["s1", "s2", "s3", "s4", "decided_by", "issues", "elapsed_seconds"]
    assert detail["elapsed_seconds"] == 12.3
    assert list(detail["s1"]) == ["choice", "n_total", "n_consistent", "angles", "reason"]
    assert detail["s1"]["reason"] == "wpA=4.00 wpB=4.00 |diff|=0.00 -> draw"
    assert list(detail["s2"]) == ["choice", "source", "best_view", "artifact_compare", "checklist", "votes",
                                  "vote_counts"]
    assert detail["s3"] == {"fired": True, "choice": "A", "reason": "decided"}
    assert list(detail["s4"]) == ["choice", "side_verdicts", "per_angle"]


def test_full_layout_validator():
    detail = run_scripted_duel(VALIDATOR, gray_rescue(VALIDATOR)).record["detail"]
    assert list(detail) == ["s1", "s2", "s3", "s4", "decided_by", "issues"]
    assert list(detail["s1"]) == ["choice", "n_total", "n_consistent", "angles"]
    assert list(detail["s2"]) == ["choice", "source", "best_view", "artifact_compare", "checklist"]
    assert detail["s3"] == {"fired": True, "choice": "A"}


@BOTH
def test_no_s3_key_when_s2_decided(rules):
    detail = run_scripted_duel(rules, consensus(rules)).record["detail"]
    assert "s3" not in detail and list(detail)[:3] == ["s1", "s2", "s4"]


def test_s3_key_switch_when_s2_decided():
    rules = replace(CLASSIC, layout=replace(CLASSIC.layout, s3_when_s2_decided=True))
    detail = run_scripted_duel(rules, consensus(rules)).record["detail"]
    assert list(detail)[:4] == ["s1", "s2", "s3", "s4"]
    assert detail["s3"] == {"fired": False, "choice": None, "reason": "not_run"}


def test_s3_key_switch_in_the_validator_layout():
    rules = replace(VALIDATOR, layout=replace(VALIDATOR.layout, s3_when_s2_decided=True))
    assert run_scripted_duel(rules, consensus(rules)).record["detail"]["s3"] == {"fired": False, "choice": None}


def test_gate_inconclusive_is_told_apart_only_by_the_machine_reason():
    classic = run_scripted_duel(CLASSIC, gate_inconclusive(CLASSIC)).record["detail"]
    assert classic["s3"] == {"fired": True, "choice": None, "reason": "small_difference"}
    not_fired = run_scripted_duel(CLASSIC, gate_not_fired(CLASSIC)).record["detail"]
    assert not_fired["s3"] == {"fired": False, "choice": None, "reason": "gate_not_fired"}
    assert classic["decided_by"] == not_fired["decided_by"] == "S3 (gate did not fire) -> draw"


@BOTH
def test_missing_preview_layouts(rules):
    missing = run_scripted_duel(rules, missing_left_file(rules)).record
    expected = {"reason": "no preview from left"}
    if rules is CLASSIC:
        expected["missing"] = {"left": ["gray/front.png"]}
    assert missing["detail"] == expected
    assert run_scripted_duel(rules, no_right_folder(rules)).record["detail"] == {"reason": "no preview from right"}
    both = run_scripted_duel(rules, no_previews(rules)).record["detail"]
    assert both["reason"] == "no previews on either side"


def test_checklist_failures_in_the_record():
    decompose = run_scripted_duel(CLASSIC, checklist_failed(CLASSIC)).record["detail"]["s2"]
    assert decompose["checklist"] == {"decompose_failed": True, "score_a": 0, "score_b": 0, "gap": 0,
                                      "choice": "draw"}
    assert decompose["votes"]["checklist"] is None
    verify = run_scripted_duel(CLASSIC, verify_failed(CLASSIC)).record["detail"]["s2"]["checklist"]
    assert verify["main_object_correct_a"] is None and verify["score_a"] == 0


def test_elapsed_seconds_rounding():
    trace = run_scripted_duel(CLASSIC, replace(gate_not_fired(CLASSIC), elapsed=7.25))
    assert trace.record["detail"]["elapsed_seconds"] == 7.2   # round() to 0.1, half to even on binary floats


# ---------------------------------------------------------------------------------------------
# decisions and guards

def _stages(rules, script):
    """S1-S4 results of a scripted duel that reaches S4, rebuilt from pure pieces."""
    s1 = D.decide_s1(script.s1, rules)
    cl = D.checklist_result(script.decompose, script.verify_a, script.verify_b, rules)
    s2 = D.decide_s2(None, D.penalty_pair(*script.ac), cl, rules)
    s3 = D.decide_s3(D.gray_stats(script.gray_a, script.gray_b, rules), None, None, rules)
    s4 = D.decide_s4(D.primary_decision(s2, s3, rules).choice, side_guard(rules, OK), side_guard(rules, OK), rules)
    return s1, s2, s3, s4


@BOTH
def test_primary_and_final_decisions(rules):
    s1, s2, s3, s4 = _stages(rules, gate_not_fired(rules))
    arrow = rules.layout.arrow
    assert D.primary_decision(s2, s3, rules) == D.Decision("draw", f"S3 (gate did not fire) {arrow} draw")
    assert D.final_decision(s1, s2, s3, s4, rules=rules).winner == "draw"
    decisive = D.decide_s1(s1_replies(rules, agreeing(6, 2)), rules)
    assert D.final_decision(decisive, rules=rules) == D.Decision("B", "S1")


def test_decision_guards():
    s1, s2, s3, s4 = _stages(CLASSIC, gate_not_fired(CLASSIC))
    with pytest.raises(ValueError, match="needs the S2 and S4 results"):
        D.final_decision(s1, s2, s3, None, rules=CLASSIC)
    with pytest.raises(ValueError, match="needs the S3 result"):
        D.primary_decision(s2, None, CLASSIC)
    with pytest.raises(ValueError, match="S4 started from A"):
        D.final_decision(s1, s2, s3, replace(s4, primary="A", choice="A"), rules=CLASSIC)
    with pytest.raises(ValueError, match="elapsed_seconds"):
        D.duel_record("x", "u", CLASSIC, s1=s1, s2=s2, s3=s3, s4=s4)
    with pytest.raises(ValueError, match="preview check or the S1 result"):
        D.duel_record("x", "u", CLASSIC)
    decisive = D.decide_s1(s1_replies(CLASSIC, agreeing(6, 2)), CLASSIC)
    with pytest.raises(ValueError, match="S1 decided"):
        D.duel_record("x", "u", CLASSIC, s1=decisive, s2=s2)
    s2_decided = D.decide_s2(None, D.PenaltyPair(1, 5), D.checklist_result(
        {"main_object": "c", "features": []}, ALL_YES, ALL_NO, CLASSIC), CLASSIC)
    with pytest.raises(ValueError, match="S2 decided"):
        D.duel_record("x", "u", CLASSIC, s1=s1, s2=s2_decided, s3=s3, s4=s4, elapsed_seconds=1)


def test_validator_needs_no_elapsed_seconds():
    s1, s2, s3, s4 = _stages(VALIDATOR, gate_not_fired(VALIDATOR))
    record = D.duel_record("x", "u", VALIDATOR, s1=s1, s2=s2, s3=s3, s4=s4, issues="i", elapsed_seconds=3.0)
    assert "elapsed_seconds" not in record["detail"]


def test_preview_checks():
    files = required_files(CLASSIC)
    assert D.check_previews(files, files + ["embeddings.npz"], CLASSIC) is None
    assert D.check_previews(None, files, CLASSIC) == D.PreviewCheck("right", "no preview from left")
    assert D.check_previews(files, None, CLASSIC) == D.PreviewCheck("left", "no preview from right")
    assert D.check_previews(None, None, CLASSIC) == D.PreviewCheck("draw", "no previews on either side")
    partial = D.check_previews(files[1:], [], CLASSIC)
    assert partial.winner == "draw"
    assert partial.detail(CLASSIC) == {"reason": "no previews on either side",
                                       "missing": {"left": ["grid.png"], "right": files}}
    assert partial.detail(VALIDATOR) == {"reason": "no previews on either side"}
    assert D.missing_files(None, VALIDATOR) == required_files(VALIDATOR)


def test_winner_mapping_and_skipped_record():
    assert [D.winner_of(c) for c in ("A", "B", "draw")] == ["left", "right", "draw"]
    assert D.skipped_record("chair", "u", "TimeoutError: read timed out") == {
        "stem": "chair", "prompt_url": "u", "winner": "skipped",
        "detail": {"error": "TimeoutError: read timed out"}}


def test_log_lines():
    assert D.judging_line("chair") == "\nJudging chair"
    assert D.stage_line("chair", "S3", {"fired": False, "choice": None, "note": "é"}) == (
        'chair S3: {"choice": null, "fired": false, "note": "é"}')
    trace = run_scripted_duel(VALIDATOR, gate_not_fired(VALIDATOR))
    assert trace.lines[-1] == "chair final: winner=draw decided_by=S3 (gate did not fire) → draw"
    assert [line.split(":")[0] for line in trace.lines[1:-1]] == ["chair S1", "chair S2", "chair S3", "chair S4"]
    missing = run_scripted_duel(CLASSIC, no_previews(CLASSIC))
    assert missing.lines == ["\nJudging chair", "chair final: winner=draw decided_by=None"]
