"""Every error message of the chain flows, pinned: what a miner reads when a commit is refused."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES, run_cli

COMPETITION = str(FIXTURES / "competition")
SHA = "0123456789abcdef0123456789abcdef01234567"
WALLET = ["--wallet.name", "miner", "--wallet.hotkey", "default"]
CHAIN = ["--subtensor.endpoint", "sim:chain.json", "--competition-url", COMPETITION]

CASES = {
    "short hash": (8582370, True, ["commit-hash", "--hash", "abc123", *WALLET, *CHAIN]),
    "bad repo": (8582370, True, ["commit-repo-cdn", "--repo", "no-slash", "--cdn-url", "https://cdn.example.com",
                                 *WALLET, *CHAIN]),
    "bad cdn url": (8582370, True, ["commit-repo-cdn", "--repo", "me/gen", "--cdn-url", "ftp://cdn.example.com",
                                    *WALLET, *CHAIN]),
    "repo before hash": (8582370, True, ["commit-repo-cdn", "--repo", "me/gen", "--cdn-url",
                                         "https://cdn.example.com", "--skip-cdn-check", *WALLET, *CHAIN]),
    "unregistered hotkey": (8582370, False, ["commit-hash", "--hash", SHA, *WALLET, *CHAIN]),
    "before the reveal window": (8582000, True, ["commit-hash", "--hash", SHA, *WALLET, *CHAIN]),
    "straddling the boundary": (8603963, True, ["commit-hash", "--hash", SHA, *WALLET, *CHAIN]),
    "state unreadable": (8582370, True, ["commit-hash", "--hash", SHA, *WALLET, "--subtensor.endpoint",
                                         "sim:chain.json", "--competition-url", "/nonexistent/competition"]),
    "round not yet revealed": (8582370, True, ["list-all", "--round", "26", *CHAIN]),
    "missing rehearsal chain": (None, True, ["commit-hash", "--hash", SHA, *WALLET, "--subtensor.endpoint",
                                             "sim:nope.json", "--competition-url", COMPETITION]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_chain_error_messages(tmp_path, case, snapshot):
    block, register, argv = CASES[case]
    if block is not None:
        init = ["chain", "init", "chain.json", "--block", str(block)] + (["--wallet.name", "miner"] if register else [])
        assert run_cli(init, cwd=tmp_path).exit_code == 0
    result = run_cli(argv, cwd=tmp_path, tool="404-cli")
    assert result.exit_code == 1, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["success"] is False
    assert answer["error"].replace(str(tmp_path), "<tmp>").replace(COMPETITION, "<competition>") == snapshot
