"""parse_commitments: the round filter, JSON parsing, highest block wins, ties, ordering."""

from __future__ import annotations

import json

import pytest

from runner404.chain.codec import CommitmentEntry, RevealWindow, parse_commitments

A, B, C = "5A" + "a" * 46, "5B" + "b" * 46, "5C" + "c" * 46
H1, H2, H3 = "1" * 40, "2" * 40, "3" * 40


def commit(sha: str) -> str:
    return json.dumps({"commit": sha})


def repo(name: str, cdn: str) -> str:
    return json.dumps({"repo": name, "cdn_url": cdn})


def test_two_step_submission_becomes_one_entry():
    entries = parse_commitments({A: [(100, commit(H1)), (130, repo("o/m", "https://c/1"))]}, None)
    assert entries == [CommitmentEntry(A, H1, 100, "o/m", 130, "https://c/1", 130)]
    assert list(entries[0].as_dict()) == ["hotkey", "commit_hash", "commit_block", "repo",
                                          "repo_block", "cdn_url", "cdn_block"]


def test_repo_and_cdn_missing_are_null():
    (entry,) = parse_commitments({A: [(5, commit(H1))]}, None)
    assert entry.as_dict() == {"hotkey": A, "commit_hash": H1, "commit_block": 5, "repo": None,
                               "repo_block": None, "cdn_url": None, "cdn_block": None}


def test_hotkeys_without_commit_are_dropped():
    revealed = {A: [(1, repo("o/m", "https://c"))], B: [(2, commit(H2))], C: []}
    assert [e.hotkey for e in parse_commitments(revealed, None)] == [B]


def test_highest_block_wins_per_key_independently():
    revealed = {A: [
        (10, commit(H1)),
        (30, json.dumps({"commit": H3, "repo": "o/new"})),
        (20, commit(H2)),
        (25, json.dumps({"cdn_url": "https://c/old"})),
        (15, json.dumps({"repo": "o/old", "cdn_url": "https://c/older"})),
    ]}
    (entry,) = parse_commitments(revealed, None)
    assert (entry.commit_hash, entry.commit_block) == (H3, 30)
    assert (entry.repo, entry.repo_block) == ("o/new", 30)
    assert (entry.cdn_url, entry.cdn_block) == ("https://c/old", 25)


def test_ties_keep_the_first_seen():
    (entry,) = parse_commitments({A: [(7, commit(H1)), (7, commit(H2))]}, None)
    assert entry.commit_hash == H1
    (entry,) = parse_commitments({A: [(7, commit(H2)), (7, commit(H1))]}, None)
    assert entry.commit_hash == H2


def test_empty_and_non_string_values_do_not_count():
    revealed = {A: [(1, commit(H1)), (2, json.dumps({"commit": ""})), (3, json.dumps({"commit": None})),
                    (4, json.dumps({"commit": 123})), (5, json.dumps({"repo": ["x"]}))]}
    (entry,) = parse_commitments(revealed, None)
    assert (entry.commit_hash, entry.commit_block, entry.repo) == (H1, 1, None)


def test_unparseable_and_non_object_entries_are_skipped():
    revealed = {A: [(1, "not json"), (2, 'po":"org/model"}'), (3, "[1, 2]"), (4, '"text"'),
                    (5, ""), (6, commit(H1)), (7, "{'commit': 'x'}"), (8, b'{"commit": "y"}')]}
    (entry,) = parse_commitments(revealed, None)  # type: ignore[arg-type]
    assert (entry.commit_hash, entry.commit_block) == (H1, 6)


def test_round_filter_is_inclusive_on_both_ends():
    revealed = {A: [(99, commit(H1)), (100, commit(H2))], B: [(200, commit(H3)), (201, commit(H1))]}
    window = RevealWindow(100, 200)
    entries = parse_commitments(revealed, window)
    assert [(e.hotkey, e.commit_hash, e.commit_block) for e in entries] == [(A, H2, 100),
                                                                          (B, H3, 200)]
    assert parse_commitments(revealed, (100, 200)) == entries


def test_round_filter_applies_to_repo_reveals_too():
    revealed = {A: [(100, commit(H1)), (150, repo("o/in", "https://c/in")),
                    (250, repo("o/late", "https://c/late"))]}
    (entry,) = parse_commitments(revealed, RevealWindow(100, 200))
    assert (entry.repo, entry.repo_block) == ("o/in", 150)


def test_next_round_window_has_no_upper_bound():
    revealed = {A: [(200, commit(H1))], B: [(201, commit(H2))], C: [(10**9, commit(H3))]}
    entries = parse_commitments(revealed, RevealWindow(201, None))
    assert [e.hotkey for e in entries] == [B, C]


def test_window_none_keeps_everything():
    assert len(parse_commitments({A: [(0, commit(H1))], B: [(5, commit(H2))]}, None)) == 2
    assert 5 in RevealWindow(None, None)
    assert True not in RevealWindow(0, 10)


def test_sorted_by_commit_block_then_hotkey():
    revealed = {C: [(50, commit(H3))], B: [(10, commit(H2))], A: [(50, commit(H1))]}
    assert [e.hotkey for e in parse_commitments(revealed, None)] == [B, A, C]


def test_accepts_tuples_as_the_v10_shape():
    revealed = {A: ((100, commit(H1)), (101, repo("o/m", "https://c")))}
    (entry,) = parse_commitments(revealed, None)
    assert entry.repo_block == 101


@pytest.mark.parametrize("window", [RevealWindow(1, 0), RevealWindow(500, 600)])
def test_nothing_in_window_gives_no_entries(window):
    assert parse_commitments({A: [(100, commit(H1))]}, window) == []
