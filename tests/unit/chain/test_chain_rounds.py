"""Round rules: the round a commit counts for (every boundary block) and list-all windows."""

from __future__ import annotations

import pytest

from runner404.chain.codec import RevealWindow
from runner404.chain.competition import (DEFAULT_REVEAL_MARGIN, RoundError, Schedule,
                                         commitment_window, resolve_round, round_to_commit)
from runner404.errors import ExitCode, UsageError

# Round 24 of the fixture competition.
EARLIEST, LATEST = 8582366, 8603965
S24 = Schedule(EARLIEST, LATEST, 8605165)
S23 = Schedule(8560767, 8582365, 8583565)
MARGIN = 3  # the default safety margin; with blocks_until_reveal=2 a reveal is predicted at +5
LEAD = 2 + MARGIN


def test_default_margin_is_a_few_blocks():
    assert DEFAULT_REVEAL_MARGIN == MARGIN


def test_before_the_earliest_reveal_block_is_refused():
    with pytest.raises(RoundError) as err:
        round_to_commit(24, S24, EARLIEST - 1)
    assert str(err.value) == f"Current block {EARLIEST - 1} is before the earliest reveal block {EARLIEST}"
    assert err.value.exit_code == ExitCode.FAILED


def test_at_the_earliest_reveal_block_commits_to_the_current_round():
    choice = round_to_commit(24, S24, EARLIEST)
    assert (choice.round, choice.straddles, choice.predicted_reveal_block) == (24, False, EARLIEST + LEAD)
    assert choice.warning is None


def test_last_block_whose_predicted_reveal_fits_the_current_round():
    choice = round_to_commit(24, S24, LATEST - LEAD)
    assert (choice.round, choice.straddles, choice.predicted_reveal_block) == (24, False, LATEST)


@pytest.mark.parametrize("block", [LATEST - LEAD + 1, LATEST - MARGIN, LATEST - 1, LATEST])
def test_inside_the_margin_goes_to_the_next_round_and_straddles(block):
    choice = round_to_commit(24, S24, block)
    assert (choice.round, choice.straddles) == (25, True)
    assert choice.predicted_reveal_block == block + LEAD > LATEST
    assert choice.warning == (
        f"Block {block} is within round 24's reveal window (latest reveal block {LATEST}), but "
        f"the reveal is expected around block {block + LEAD}, so the commitment will most likely "
        "count for round 25, possibly for round 24")


@pytest.mark.parametrize("block", [LATEST + 1, LATEST + 1000])
def test_after_the_latest_reveal_block_is_the_next_round_without_doubt(block):
    choice = round_to_commit(24, S24, block)
    assert (choice.round, choice.straddles, choice.warning) == (25, False, None)


def test_zero_margin_and_zero_delay_is_the_classic_rule():
    assert round_to_commit(24, S24, LATEST, 0, blocks_until_reveal=0).round == 24
    assert round_to_commit(24, S24, LATEST + 1, 0, blocks_until_reveal=0).round == 25
    choice = round_to_commit(24, S24, LATEST - 2, 0)  # reveal predicted exactly at LATEST
    assert (choice.round, choice.straddles) == (24, False)
    choice = round_to_commit(24, S24, LATEST - 1, 0)
    assert (choice.round, choice.straddles) == (25, True)


def test_a_larger_margin_moves_the_boundary():
    assert round_to_commit(24, S24, LATEST - 12, 10).round == 24
    assert round_to_commit(24, S24, LATEST - 11, 10).straddles


@pytest.mark.parametrize("args", [(-1, S24, EARLIEST), (24, S24, -5), (24, S24, EARLIEST, -1),
                                  (24, S24, 1.5), (True, S24, EARLIEST)])
def test_round_to_commit_rejects_bad_arguments(args):
    with pytest.raises(UsageError):
        round_to_commit(*args)


# --- windows for list-all ----------------------------------------------------------------------

SCHEDULES = {23: S23, 24: S24}


def test_window_of_a_past_round():
    assert commitment_window(23, 24, SCHEDULES) == RevealWindow(8560767, 8582365)


def test_window_of_the_current_round():
    assert commitment_window(24, 24, SCHEDULES) == RevealWindow(EARLIEST, LATEST)


def test_window_of_the_next_round_starts_after_the_current_latest():
    window = commitment_window(25, 24, SCHEDULES)
    assert window == RevealWindow(LATEST + 1, None)
    assert LATEST not in window and LATEST + 1 in window and 10**12 in window


def test_later_rounds_are_not_revealed_yet():
    with pytest.raises(RoundError) as err:
        commitment_window(26, 24, SCHEDULES)
    assert str(err.value) == "Round 26 is not yet revealed. Next round is 25."


def test_missing_schedule_is_an_error():
    with pytest.raises(RoundError, match="No schedule for round 22"):
        commitment_window(22, 24, SCHEDULES)


def test_schedules_may_be_a_function():
    seen = []

    def schedule(n):
        seen.append(n)
        return SCHEDULES[n]

    assert commitment_window(25, 24, schedule) == RevealWindow(LATEST + 1, None)
    assert seen == [24]


def test_negative_round_is_a_usage_error():
    with pytest.raises(UsageError):
        commitment_window(-1, 24, SCHEDULES)


def test_resolve_round():
    assert resolve_round("current", 24) == 24
    assert resolve_round("next", 24) == 25
    assert resolve_round(7, 24) == 7
    assert resolve_round("23", 24) == 23
    with pytest.raises(UsageError):
        resolve_round("previous", 24)
