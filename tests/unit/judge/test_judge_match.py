"""Match scoring from duel records (judge.md §10)."""

from __future__ import annotations

import pytest

from runner404.judge.match import WIN_MARGIN, deciding_stage, records_of, score_match


def duel(winner: str, decided_by: str | None = None, reason: str | None = None) -> dict:
    detail = {}
    if decided_by:
        detail["decided_by"] = decided_by
    if reason:
        detail["reason"] = reason
    if winner == "skipped":
        detail = {"error": "TimeoutError: boom"}
    return {"stem": "s", "prompt_url": "u", "winner": winner, "detail": detail}


RECORDS = [
    duel("right", "S1"),
    duel("right", "S2 strong_voter [bv|+2.0|+cl|-6|]"),
    duel("left", "S2 consensus"),
    duel("draw", "S3 (gate did not fire) -> draw"),
    duel("left", "S3 gray-rescue"),
    duel("draw", "S4 step-down (was A)"),
    duel("right", reason="no preview from left"),
    duel("draw", reason="no previews on either side"),
    duel("skipped"),
    duel("right", "S3 (gate did not fire) → draw"),   # validator arrow (e.g. an S4 flip would read S4)
]


def test_score_margin_and_counts():
    result = score_match({"results": RECORDS})
    assert (result.duels, result.right, result.left, result.draws, result.skipped) == (10, 4, 2, 3, 1)
    assert result.score == 2
    assert result.margin == pytest.approx(0.2)       # skipped and draw duels stay in the denominator
    assert result.qualifies and result.verdict == "right qualifies against left"
    assert result.by_stage == {"S1": 1, "S2": 2, "S3": 3, "S4": 1, "no preview": 2, "skipped": 1}


def test_win_margin_boundary():
    # 128 prompts: 9 net right wins qualify (0.0703), 8 do not (0.0625)
    qualifies = [duel("right", "S1")] * 9 + [duel("draw", "S2 consensus")] * 119
    assert score_match(qualifies).margin == pytest.approx(9 / 128) and score_match(qualifies).qualifies
    short = [duel("right", "S1")] * 8 + [duel("draw", "S1")] * 120
    assert not score_match(short).qualifies
    assert score_match(short).verdict == "right does not qualify against left"
    exactly = [duel("right", "S1")] * 7 + [duel("draw", "S1")] * 93
    assert score_match(exactly).margin == 0.07 and score_match(exactly).qualifies


def test_left_wins_give_negative_margins():
    result = score_match([duel("left", "S1"), duel("left", "S1"), duel("right", "S1")])
    assert (result.score, result.margin, result.qualifies) == (-1, pytest.approx(-1 / 3), False)


def test_custom_win_margin():
    records = [duel("right", "S1"), duel("draw", "S1")]
    assert score_match(records, win_margin=0.6).qualifies is False
    assert score_match(records, win_margin=0.5).qualifies is True
    assert score_match(records).win_margin == WIN_MARGIN == 0.07


def test_no_duels():
    result = score_match([])
    assert (result.duels, result.score, result.margin, result.qualifies) == (0, 0, 0.0, False)
    assert result.by_stage == {"S1": 0, "S2": 0, "S3": 0, "S4": 0, "no preview": 0, "skipped": 0}


def test_winner_case_is_ignored():
    assert score_match([{"winner": "RIGHT", "detail": {"decided_by": "S1"}}]).right == 1


@pytest.mark.parametrize("record, stage", [
    (duel("left", "S4 step-down (was draw)"), "S4"),
    (duel("draw", "S3 (gate did not fire) → draw"), "S3"),
    (duel("left", reason="no preview from right"), "no preview"),
    (duel("skipped"), "skipped"),
    ({"winner": "draw"}, "other"),
])
def test_deciding_stage(record, stage):
    assert deciding_stage(record) == stage


def test_unknown_stage_groups_are_counted():
    assert score_match([{"winner": "draw", "detail": {}}]).by_stage["other"] == 1


def test_records_of():
    assert records_of({"results": RECORDS[:2]}) == RECORDS[:2]
    assert records_of(iter(RECORDS[:1])) == RECORDS[:1]


def test_as_dict():
    assert score_match(RECORDS[:2]).as_dict() == {
        "duels": 2, "left": 0, "right": 2, "draws": 0, "skipped": 0, "score": 2, "margin": 1.0,
        "win_margin": 0.07, "qualifies": True, "verdict": "right qualifies against left",
        "by_stage": {"S1": 1, "S2": 1, "S3": 0, "S4": 0, "no preview": 0, "skipped": 0}}
