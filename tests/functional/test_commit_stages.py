"""commit and commitments stages end to end on the rehearsal chain and a local competition folder."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES, MANIFESTS, serve_folder

COMPETITION = FIXTURES / "competition"


@pytest.fixture(scope="module")
def cdn():
    """A loopback static server standing in for a miner's CDN (serves the competition fixture)."""
    with serve_folder(COMPETITION) as url:
        yield url


def _setup(tmp_path, cli, *, block=8582370, register=True):
    shutil.copy(MANIFESTS / "commit.yaml", tmp_path / "commit.yaml")
    argv = ["chain", "init", "chain.json", "--block", str(block)]
    if register:
        argv += ["--wallet.name", "miner"]
    assert cli(argv, cwd=tmp_path).exit_code == 0


def _run(cli, tmp_path, cdn_url, *extra):
    return cli(["run", "commit.yaml", "--set", "vars.network=sim:chain.json",
                "--set", f"vars.competition={COMPETITION}", "--set", f"vars.cdn_url={cdn_url}", *extra], cwd=tmp_path)


def test_hash_then_repo_then_list(tmp_path, cli, cdn):
    _setup(tmp_path, cli)
    result = _run(cli, tmp_path, f"{cdn}/state.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    hash_result = json.loads((tmp_path / "out/commit-hash/commit.json").read_text())
    assert hash_result["success"] and hash_result["round"] == 24 and hash_result["block"] == 8582371
    repo_result = json.loads((tmp_path / "out/commit-repo/commit.json").read_text())
    assert repo_result["repo"] == "your-org/your-generator" and repo_result["round"] == 24
    assert cli(["chain", "advance", "chain.json", "--blocks", "3"], cwd=tmp_path).exit_code == 0
    again = _run(cli, tmp_path, f"{cdn}/state.json")  # commits are done: only the listing runs
    assert again.exit_code == 0
    assert "commit-hash  commit       skipped" in again.stdout
    (entry,) = [json.loads(line) for line in (tmp_path / "out/check/commitments.jsonl").read_text().splitlines()]
    assert entry["commit_hash"] == "0123456789abcdef0123456789abcdef01234567"
    assert entry["repo"] == "your-org/your-generator" and entry["cdn_url"] == f"{cdn}/state.json"
    assert list(entry) == ["hotkey", "commit_hash", "commit_block", "repo", "repo_block", "cdn_url", "cdn_block",
                           "coldkey", "locked_rho", "required_rho", "lock_sufficient"]
    state = json.loads(cli(["chain", "show", "chain.json"], cwd=tmp_path).stdout)
    assert len(state["subnets"]["17"]["revealed"]) == 2


def test_an_unregistered_hotkey_is_refused(tmp_path, cli, cdn):
    _setup(tmp_path, cli, register=False)
    result = _run(cli, tmp_path, f"{cdn}/state.json")
    assert result.exit_code == 1
    assert "AccountNotAllowedCommit" in result.stdout
    assert "commit-repo  commit       blocked" in result.stdout


def test_an_inaccessible_cdn_is_refused(tmp_path, cli, cdn):
    _setup(tmp_path, cli)
    result = _run(cli, tmp_path, f"{cdn}/no-such-file")
    assert result.exit_code == 1
    assert f"CDN URL {cdn}/no-such-file is not accessible: 404" in result.stdout


def test_committing_before_the_reveal_window_is_refused(tmp_path, cli, cdn):
    _setup(tmp_path, cli, block=8582000)
    result = _run(cli, tmp_path, f"{cdn}/state.json")
    assert result.exit_code == 1
    assert "Current block 8582000 is before the earliest reveal block 8582366" in result.stdout


def test_a_commit_straddling_the_round_boundary_needs_force(tmp_path, cli, cdn):
    _setup(tmp_path, cli, block=8603963)  # the reveal would land after round 24's latest reveal block
    refused = _run(cli, tmp_path, f"{cdn}/state.json")
    assert refused.exit_code == 1 and "force" in refused.stdout
    forced = _run(cli, tmp_path, f"{cdn}/state.json", "--set", "stages.commit-hash.force=true",
                  "--set", "stages.commit-repo.force=true")
    assert forced.exit_code == 0, forced.stdout
    assert json.loads((tmp_path / "out/commit-hash/commit.json").read_text())["round"] == 25
