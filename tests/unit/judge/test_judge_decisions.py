"""S1, S2 and S4 decisions with small hand-made replies (judge.md §7.1, §7.2, §7.4)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from judge_fixtures import FAILED, agreeing, decomposition, pen, s1_replies, side_guard, verification
from runner404.judge import duel as D
from runner404.judge.rules import preset, rules_from

CLASSIC, VALIDATOR = preset("404-cli"), preset("validator")
BIASED = (pen(2, 5), pen(2, 5))   # each order prefers model 1: contradictory


# ---------------------------------------------------------------------------------------------
# S1

def test_angle_penalties_and_diffs():
    angle = CLASSIC.s1.angles[0]
    result = D.score_angle(angle, pen(2, 5), pen(6, 3))
    assert (result.pen_a, result.pen_b) == (2.5, 5.5)         # A: AB.p1, BA.p2; B: AB.p2, BA.p1
    assert (result.diff_ab, result.diff_ba) == (-3, -3)
    assert not result.json_failed and not result.contradictory
    assert result.record() == {"label": "front", "pen_a": 2.5, "pen_b": 5.5}


@pytest.mark.parametrize("ab, ba, json_failed, contradictory", [
    (pen(2, 5), pen(2, 5), False, True),     # strictly opposite signs
    (pen(5, 2), pen(5, 2), False, True),
    (pen(2, 5), pen(4, 4), False, False),    # one order has no preference
    (pen(4, 4), pen(4, 4), False, False),
    (FAILED, pen(5, 2), True, True),         # a neutral fallback reply
    (pen(2, 5), FAILED, True, True),
])
def test_contradiction_and_json_failure(ab, ba, json_failed, contradictory):
    result = D.score_angle(CLASSIC.s1.angles[0], ab, ba)
    assert (result.json_failed, result.contradictory) == (json_failed, contradictory)


@pytest.mark.parametrize("rules, arrow", [(CLASSIC, "->"), (VALIDATOR, "→")])
def test_all_angles_contradictory(rules, arrow):
    replies = s1_replies(rules, BIASED, (FAILED, FAILED), BIASED, (pen(3, 3), FAILED))
    s1 = D.decide_s1(replies, rules)
    assert (s1.choice, s1.rule, s1.n_total, s1.n_consistent) == ("draw", "all_contradictory", 4, 0)
    assert s1.reason == f"all 4 angles contradictory {arrow} draw"
    assert s1.wp_a is None and s1.split is None


def test_both_bad():
    s1 = D.decide_s1(s1_replies(CLASSIC, agreeing(9, 8)), CLASSIC)
    assert (s1.choice, s1.rule) == ("draw", "both_bad")
    assert s1.reason == "wpA=9.00 wpB=8.00 avg=8.50 both-bad -> draw"


def test_both_bad_comes_before_the_tie():
    s1 = D.decide_s1(s1_replies(CLASSIC, agreeing(8, 8)), CLASSIC)
    assert s1.reason == "wpA=8.00 wpB=8.00 avg=8.00 both-bad -> draw"


def test_both_bad_needs_a_small_difference():
    s1 = D.decide_s1(s1_replies(CLASSIC, agreeing(9, 7)), CLASSIC)   # avg 8.0 but |diff| 2.0
    assert (s1.choice, s1.reason) == ("B", "wpA=9.00 wpB=7.00 diff=+2.00 -> B")


def test_tie():
    s1 = D.decide_s1(s1_replies(CLASSIC, (pen(3, 4), pen(3, 3))), CLASSIC)
    assert (s1.choice, s1.rule) == ("draw", "tie")
    assert s1.reason == "wpA=3.00 wpB=3.50 |diff|=0.50 -> draw"


def test_tie_threshold_is_inclusive():
    rules = rules_from({"s1": {"draw_threshold": 0.5}})
    assert D.decide_s1(s1_replies(rules, (pen(3, 4), pen(3, 3))), rules).rule == "tie"
    rules = rules_from({"s1": {"draw_threshold": 0.4}})
    assert D.decide_s1(s1_replies(rules, (pen(3, 4), pen(3, 3))), rules).choice == "A"


def test_decisive_a_and_b():
    s1 = D.decide_s1(s1_replies(CLASSIC, agreeing(2, 5)), CLASSIC)
    assert (s1.choice, s1.rule, s1.reason) == ("A", "decided", "wpA=2.00 wpB=5.00 diff=-3.00 -> A")
    s1 = D.decide_s1(s1_replies(VALIDATOR, agreeing(6, 3)), VALIDATOR)
    assert (s1.choice, s1.reason) == ("B", "wpA=6.00 wpB=3.00 diff=+3.00 → B")


def test_weights_are_renormalised_over_kept_angles():
    # front (weight 2.0) is contradictory and would favour B; the other three are kept
    replies = s1_replies(CLASSIC, (pen(9, 1), pen(9, 1)), agreeing(1, 5), agreeing(3, 5), agreeing(2, 6))
    s1 = D.decide_s1(replies, CLASSIC)
    assert (s1.n_total, s1.n_consistent) == (4, 3)
    assert s1.wp_a == pytest.approx((1.5 * 1 + 1.5 * 3 + 1.3 * 2) / 4.3)
    assert s1.wp_b == pytest.approx((1.5 * 5 + 1.5 * 5 + 1.3 * 6) / 4.3)
    assert s1.reason == "wpA=2.00 wpB=5.30 diff=-3.30 -> A"


def test_split_draw_in_the_classic_preset():
    replies = s1_replies(CLASSIC, agreeing(1, 9), agreeing(5, 4), agreeing(5, 4), agreeing(5, 4))
    s1 = D.decide_s1(replies, CLASSIC)
    assert (s1.choice, s1.rule) == ("draw", "split")
    assert (s1.split.w_a, s1.split.w_b, s1.split.n_signed) == (2.0, pytest.approx(4.3), 4)
    assert s1.split.consistency == pytest.approx(2.3 / 6.3)
    assert s1.reason == "split wA=2.0 wB=4.3 consistency=0.37 -> draw"


def test_split_threshold_differs_per_preset():
    # A better at front, front_left, front_right; B at front_above: consistency 3.7/6.3 = 0.587
    replies = s1_replies(CLASSIC, agreeing(1, 5), agreeing(1, 5), agreeing(1, 5), agreeing(9, 1))
    s1 = D.decide_s1(replies, CLASSIC)
    assert s1.choice == "A" and s1.split.consistency == pytest.approx(3.7 / 6.3)
    stricter = rules_from({"s1": {"split_consistency": 0.65}})
    s1 = D.decide_s1(replies, stricter)
    assert (s1.choice, s1.reason) == ("draw", "split wA=5.0 wB=1.3 consistency=0.59 -> draw")
    # validator: equal weights, 3 vs 1 gives consistency 0.50 < 0.65
    replies = s1_replies(VALIDATOR, agreeing(1, 9), agreeing(5, 4), agreeing(5, 4), agreeing(5, 4))
    s1 = D.decide_s1(replies, VALIDATOR)
    assert s1.reason == "split wA=1.0 wB=3.0 consistency=0.50 → draw"
    same_pattern = s1_replies(CLASSIC, agreeing(1, 9), agreeing(5, 4), agreeing(5, 4), agreeing(5, 4))
    assert D.decide_s1(same_pattern, CLASSIC).split.consistency < 0.5   # classic weights: 2.0 vs 4.3


def test_split_needs_three_signed_angles():
    replies = s1_replies(CLASSIC, agreeing(1, 9), agreeing(6, 5), agreeing(5, 5), agreeing(5, 5))
    s1 = D.decide_s1(replies, CLASSIC)
    assert s1.split.n_signed == 2 and s1.split.consistency < 0.5
    assert (s1.choice, s1.rule) == ("A", "decided")
    fewer = rules_from({"s1": {"split_min_angles": 2}})
    assert D.decide_s1(replies, fewer).rule == "split"


def test_split_check_without_signed_angles():
    angles = [D.score_angle(CLASSIC.s1.angles[0], pen(4, 4), pen(4, 4))]
    assert D.split_check(angles) == D.SplitCheck(0.0, 0.0, 1.0, 0)


def test_s1_record_layout_per_preset():
    classic = D.decide_s1(s1_replies(CLASSIC, agreeing(2, 5)), CLASSIC).record(CLASSIC)
    assert list(classic) == ["choice", "n_total", "n_consistent", "angles", "reason"]
    assert classic["angles"][0] == {"label": "front", "pen_a": 2.0, "pen_b": 5.0}
    validator = D.decide_s1(s1_replies(VALIDATOR, agreeing(2, 5)), VALIDATOR).record(VALIDATOR)
    assert list(validator) == ["choice", "n_total", "n_consistent", "angles"]
    assert [a["label"] for a in validator["angles"]] == ["front_left", "front_right", "front_below", "front_above"]


def test_replies_may_be_objects():
    @dataclass
    class Penalty:
        penalty_1: int
        penalty_2: int
        issues: str

    replies = {a.label: (Penalty(2, 5, ""), Penalty(5, 2, "")) for a in CLASSIC.s1.angles}
    assert D.decide_s1(replies, CLASSIC).choice == "A"


# ---------------------------------------------------------------------------------------------
# S2 sub-judges

def test_penalty_pair():
    pair = D.penalty_pair(pen(2, 6), pen(5, 3))
    assert (pair.penalty_a, pair.penalty_b, pair.diff) == (2.5, 5.5, -3.0)
    assert pair.record() == {"penalty_a": 2.5, "penalty_b": 5.5}


def test_pick_best_view():
    embeddings = {"prompt": [1.0, 0.0], "view_front": [0.2, 0.9], "view_back": [0.9, 0.1], "view_left": [0.5, 0.5]}
    assert D.pick_best_view(embeddings) == "back"
    assert D.pick_best_view({"prompt": [1, 0], "view_a": [1, 0], "view_b": [1, 0]}) == "a"   # first on ties
    assert D.pick_best_view({"view_front": [1, 0]}) is None                                 # no prompt key
    assert D.pick_best_view({"prompt": [1, 0], "other": [1, 0]}) is None                    # no view keys
    assert D.pick_best_view(None) is None


def test_best_views_abstain():
    good = {"prompt": [1.0], "view_front": [1.0]}
    assert D.best_views(good, good, CLASSIC) == ("front", "front")
    assert D.best_views(good, None, CLASSIC) is None
    assert D.best_views({"prompt": [1.0]}, good, CLASSIC) is None
    assert D.best_views(good, good, rules_from({"s2": {"best_view": False}})) is None


def test_checklist_score():
    assert D.checklist_score(verification("yes", "yes", "partial", "no"), CLASSIC) == 8
    assert D.checklist_score(verification("yes", "yes", "partial", "no", main_object_correct=False), CLASSIC) == 5
    assert D.checklist_score({"checks": [], "main_object_correct": True}, CLASSIC) == 3


@pytest.mark.parametrize("matches_a, matches_b, gap, choice", [
    (("yes", "yes", "yes", "yes"), ("yes", "yes", "yes", "no"), 2, "A"),
    (("yes", "yes", "yes", "partial"), ("yes", "yes", "yes", "yes"), -1, "draw"),
    (("no", "no", "yes", "yes"), ("yes", "yes", "yes", "yes"), -4, "B"),
])
def test_checklist_gap_and_choice(matches_a, matches_b, gap, choice):
    result = D.checklist_result(decomposition(), verification(*matches_a), verification(*matches_b), CLASSIC)
    assert (result.gap, result.choice) == (gap, choice)


def test_checklist_summary_looks_features_up_by_exact_text():
    verify_a = verification("yes", "partial", "no", "yes",
                            features=("4 legs", "Curved back", "round seat", "armrests"))
    verify_b = verification("no", "no", "yes", "yes", main_object_correct=False)
    result = D.checklist_result(decomposition(), verify_a, verify_b, CLASSIC)
    assert result.summary() == {
        "main_object": "wooden chair",
        "main_object_correct_a": True,
        "main_object_correct_b": False,
        "features": [
            {"feature": "4 legs", "side_a": "yes", "side_b": "no"},
            {"feature": "curved back", "side_a": None, "side_b": "no"},   # renamed by the VLM
            {"feature": "round seat", "side_a": "no", "side_b": "yes"},
            {"feature": "armrests", "side_a": "yes", "side_b": "yes"},
        ],
        "score_a": 8,   # renamed checks still score: 2 + 1 + 0 + 2 + 3
        "score_b": 4,
    }


def test_checklist_decompose_failed():
    result = D.checklist_result(None, None, None, CLASSIC)
    assert (result.decompose_failed, result.score_a, result.score_b, result.gap, result.choice) == (
        True, 0, 0, 0, "draw")
    assert result.summary() == {"decompose_failed": True, "score_a": 0, "score_b": 0, "gap": 0, "choice": "draw"}


@pytest.mark.parametrize("side", ["a", "b"])
def test_checklist_verify_failed(side):
    good = verification("yes", "yes", "yes", "yes")
    verify_a, verify_b = (None, good) if side == "a" else (good, None)
    result = D.checklist_result(decomposition(), verify_a, verify_b, CLASSIC)
    assert (result.verify_failed, result.gap, result.choice) == (True, 0, "draw")
    assert result.summary() == {
        "main_object": "wooden chair", "main_object_correct_a": None, "main_object_correct_b": None,
        "features": [{"feature": f, "side_a": None, "side_b": None}
                     for f in ("4 legs", "curved back", "round seat", "armrests")],
        "score_a": 0, "score_b": 0}


def _checklist(gap: int) -> D.ChecklistResult:
    choice = "A" if gap >= 2 else "B" if gap <= -2 else "draw"
    empty = {"checks": [], "main_object_correct": True}
    return D.ChecklistResult("chair", ("f",), empty, empty, 10 + gap, 10, gap, choice)


def _pair(diff: float) -> D.PenaltyPair:
    return D.PenaltyPair(5 + diff, 5)


@pytest.mark.parametrize("diff, vote", [(-1.0, "A"), (1.0, "B"), (-0.5, None), (0.0, None), (3.5, "B")])
def test_penalty_votes(diff, vote):
    assert D.penalty_vote(_pair(diff), CLASSIC) == vote


def test_abstaining_best_view_does_not_vote():
    assert D.penalty_vote(None, CLASSIC) is None


@pytest.mark.parametrize("gap, vote", [(2, "A"), (-2, "B"), (1, None), (-1, None), (0, None), (9, "A")])
def test_checklist_votes(gap, vote):
    assert D.checklist_vote(_checklist(gap), CLASSIC) == vote


@pytest.mark.parametrize("rules, bv_diff, cl_gap, expected", [
    (CLASSIC, -2.5, 0, ("A", "bv|-2.5|")),
    (CLASSIC, 3.0, 0, ("B", "bv|+3.0|")),
    (CLASSIC, -2.0, 0, None),
    (VALIDATOR, -2.0, 0, ("A", "bv|-2.0|")),
    (CLASSIC, 0, 7, ("A", "cl|+7|")),
    (CLASSIC, 0, -8, ("B", "cl|-8|")),
    (CLASSIC, 0, 6, None),
    (VALIDATOR, 0, -6, ("B", "cl|-6|")),
    (CLASSIC, -3.0, 7, ("A", "bv|-3.0|+cl|+7|")),
    (VALIDATOR, 2.0, -6, ("B", "bv|+2.0|+cl|-6|")),
    (CLASSIC, -3.0, -7, None),             # strong for opposite sides
    (CLASSIC, 0.5, 1, None),
])
def test_strong_voter(rules, bv_diff, cl_gap, expected):
    strong = D.strong_voter(_pair(bv_diff), _checklist(cl_gap), rules)
    assert (strong.choice, strong.tag) == expected if expected else strong is None


def test_strong_voter_without_best_view():
    assert D.strong_voter(None, _checklist(0), CLASSIC) is None
    assert D.strong_voter(None, _checklist(7), CLASSIC) == D.StrongVoter("A", "cl|+7|")


@pytest.mark.parametrize("votes, choice, counts", [
    ([None, None, None], "draw", {}),
    (["A", None, None], "draw", {"A": 1}),             # top count < 2
    (["A", "B", None], "draw", {"A": 1, "B": 1}),
    (["A", "A", None], "A", {"A": 2}),
    ([None, "B", "B"], "B", {"B": 2}),
    (["B", "A", "A"], "A", {"B": 1, "A": 2}),           # 2 > 1
    (["B", "B", "B"], "B", {"B": 3}),
])
def test_consensus(votes, choice, counts):
    result = D.consensus(votes, CLASSIC)
    assert result == (choice, counts)
    assert list(result[1]) == list(counts)   # first-vote order


def test_consensus_needs_more_than_the_others():
    rules = rules_from({})
    assert D.consensus(["A", "A", "B", "B"], rules)[0] == "draw"


# ---------------------------------------------------------------------------------------------
# S2 decision and record

def test_s2_strong_voter_decides():
    s2 = D.decide_s2(_pair(-3.0), _pair(2.0), _checklist(-1), CLASSIC)
    assert (s2.choice, s2.source, s2.strong_tag, s2.vote_counts) == ("A", "strong_voter", "bv|-3.0|", None)
    assert s2.votes == {"best_view": "A", "artifact_compare": "B", "checklist": None}
    assert s2.decided_by == "S2 strong_voter [bv|-3.0|]"


def test_s2_consensus_decides():
    s2 = D.decide_s2(None, _pair(-1.5), _checklist(3), CLASSIC)
    assert (s2.choice, s2.source, s2.vote_counts) == ("A", "consensus_3", {"A": 2})
    assert s2.decided_by == "S2 consensus"


def test_s2_draw_has_no_decided_by():
    s2 = D.decide_s2(None, _pair(-1.5), _checklist(-3), CLASSIC)
    assert (s2.choice, s2.source, s2.vote_counts, s2.decided_by) == ("draw", "consensus_3", {"A": 1, "B": 1}, None)


def test_opposite_strong_voters_fall_back_to_consensus():
    s2 = D.decide_s2(_pair(-3.0), _pair(1.0), _checklist(-7), CLASSIC)
    assert (s2.choice, s2.source, s2.vote_counts) == ("B", "consensus_3", {"A": 1, "B": 2})


def test_s2_strong_threshold_differs_per_preset():
    args = (_pair(2.0), _pair(0.0), _checklist(0))
    assert D.decide_s2(*args, VALIDATOR).decided_by == "S2 strong_voter [bv|+2.0|]"
    classic = D.decide_s2(*args, CLASSIC)
    assert (classic.choice, classic.source) == ("draw", "consensus_3")   # only one vote


def test_s2_record_layouts():
    strong = D.decide_s2(_pair(-3.0), _pair(2.0), _checklist(0), CLASSIC)
    record = strong.record(CLASSIC)
    assert list(record) == ["choice", "source", "best_view", "artifact_compare", "checklist", "votes", "strong_tag"]
    assert record["votes"] == {"best_view": "A", "artifact_compare": "B", "checklist": None}
    assert record["strong_tag"] == "bv|-3.0|"
    assert record["best_view"] == {"penalty_a": 2.0, "penalty_b": 5}
    consensus = D.decide_s2(None, _pair(2.0), _checklist(0), CLASSIC).record(CLASSIC)
    assert list(consensus) == ["choice", "source", "best_view", "artifact_compare", "checklist", "votes",
                               "vote_counts"]
    assert consensus["best_view"] is None and consensus["vote_counts"] == {"B": 1}
    assert list(strong.record(VALIDATOR)) == ["choice", "source", "best_view", "artifact_compare", "checklist"]


# ---------------------------------------------------------------------------------------------
# S4

@pytest.mark.parametrize("verdicts, side", [
    (("garbage", "garbage", "garbage", "ok"), "garbage"),
    (("garbage",) * 4, "garbage"),
    (("garbage", "ok", "garbage", "ok"), "ok"),
    (("ok",) * 4, "ok"),
])
def test_side_verdict(verdicts, side):
    assert D.side_verdict(verdicts, CLASSIC) == side


def test_garbage_votes_override():
    assert D.side_verdict(("garbage", "garbage", "ok", "ok"), rules_from({"s4": {"garbage_votes": 2}})) == "garbage"


@pytest.mark.parametrize("primary, verdict_a, verdict_b, choice", [
    ("A", "ok", "ok", "A"), ("B", "ok", "ok", "B"), ("draw", "ok", "ok", "draw"),
    ("A", "garbage", "garbage", "A"), ("B", "garbage", "garbage", "B"), ("draw", "garbage", "garbage", "draw"),
    ("A", "garbage", "ok", "draw"), ("draw", "garbage", "ok", "B"), ("B", "garbage", "ok", "B"),
    ("B", "ok", "garbage", "draw"), ("draw", "ok", "garbage", "A"), ("A", "ok", "garbage", "A"),
])
def test_step_down_table(primary, verdict_a, verdict_b, choice):
    assert D.step_down(primary, verdict_a, verdict_b) == choice


def test_decide_s4_record():
    s4 = D.decide_s4("A", side_guard(CLASSIC, "garbage", "garbage", "ok", "garbage"), side_guard(CLASSIC, "ok"),
                     CLASSIC)
    assert (s4.primary, s4.choice, s4.applied) == ("A", "draw", True)
    assert s4.record(CLASSIC) == {
        "choice": "draw",
        "side_verdicts": {"a": "garbage", "b": "ok"},
        "per_angle": {"a": {"right": "garbage", "back": "garbage", "left": "ok", "top_down": "garbage"},
                      "b": {"right": "ok", "back": "ok", "left": "ok", "top_down": "ok"}},
    }
    assert list(s4.record(CLASSIC)["per_angle"]["a"]) == ["right", "back", "left", "top_down"]


def test_decide_s4_accepts_plain_verdicts_and_keeps_an_unchanged_choice():
    views = [v.label for v in CLASSIC.s4.views]
    s4 = D.decide_s4("B", dict.fromkeys(views, "ok"), dict.fromkeys(views, "ok"), CLASSIC)
    assert (s4.choice, s4.applied) == ("B", False)


def test_neutral_side_guard_counts_as_ok():
    replies = side_guard(CLASSIC, "garbage", "garbage", "ok", "ok")
    replies["left"] = {"verdict": "ok", "reason": "JSON_PARSE_FAILED"}
    assert D.decide_s4("draw", replies, side_guard(CLASSIC, "ok"), CLASSIC).verdict_a == "ok"
