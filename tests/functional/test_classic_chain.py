"""commit-hash, commit-repo-cdn and list-all on the rehearsal chain, the competition fixture and
a loopback static server standing in for the CDN."""

from __future__ import annotations

import io
import json
import os

import pytest

from conftest import FIXTURES, run_cli, serve_folder
from runner404.cli import classic
from runner404.cli.environment import Environment

COMPETITION = str(FIXTURES / "competition")
SHA = "0123456789abcdef0123456789abcdef01234567"
WALLET = ["--wallet.name", "miner", "--wallet.hotkey", "default"]
CHAIN = ["--subtensor.endpoint", "sim:chain.json", "--competition-url", COMPETITION]
KEYS = ["hotkey", "commit_hash", "commit_block", "repo", "repo_block", "cdn_url", "cdn_block", "coldkey",
        "locked_rho", "required_rho", "lock_sufficient"]


@pytest.fixture(scope="module")
def cdn():
    """A loopback static server: the CDN (HEAD checks) and, under /, the competition files."""
    with serve_folder(COMPETITION) as url:
        yield url


def cli(argv, cwd, **kw):
    return run_cli(argv, cwd=cwd, tool="404-cli", **kw)


def chain(tmp_path, *, block=8582370, register=True):
    argv = ["chain", "init", "chain.json", "--block", str(block)] + (["--wallet.name", "miner"] if register else [])
    assert run_cli(argv, cwd=tmp_path).exit_code == 0


def advance(tmp_path, blocks=3):
    assert run_cli(["chain", "advance", "chain.json", "--blocks", str(blocks)], cwd=tmp_path).exit_code == 0


def one_json(result) -> dict:
    """stdout is exactly one JSON document (D1)."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_hash_then_repo_then_list(tmp_path, cdn):
    chain(tmp_path)
    committed = cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN], tmp_path)
    assert committed.exit_code == 0, committed.stdout + committed.stderr
    result = one_json(committed)
    assert list(result) == ["success", "commit", "round", "block", "extrinsic_id", "reveal_block"]
    assert result["success"] and result["commit"] == SHA and result["round"] == 24
    assert result["block"] == 8582371 and result["extrinsic_id"] == "8582371-1"
    assert "Committed in block 8582371" in committed.stderr
    assert "commited" not in committed.stderr and "WARNING: You have not" not in committed.stderr  # D2
    assert "WARNING: Your coldkey has only 0.0000 ρ locked on netuid 17" in committed.stderr
    assert json.loads((tmp_path / ".runner404/classic/commit-hash/commit.json").read_text()) == result

    advance(tmp_path)  # the hash is revealed
    cdn_url = f"{cdn}/state.json"
    repo = cli(["commit-repo-cdn", "--repo", "your-org/your.generator", "--cdn-url", cdn_url, *WALLET, *CHAIN],
               tmp_path)
    assert repo.exit_code == 0, repo.stdout + repo.stderr
    result = one_json(repo)
    assert list(result)[:4] == ["success", "repo", "cdn_url", "round"]
    assert (result["repo"], result["cdn_url"], result["round"]) == ("your-org/your.generator", cdn_url, 24)

    advance(tmp_path)
    listed = cli(["list-all", "--round", "24", *CHAIN], tmp_path)
    assert listed.exit_code == 0, listed.stdout + listed.stderr
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert list(entry) == KEYS
    assert (entry["commit_hash"], entry["repo"], entry["cdn_url"]) == (SHA, "your-org/your.generator", cdn_url)
    assert (entry["locked_rho"], entry["required_rho"], entry["lock_sufficient"]) == (0.0, 100.0, False)
    assert listed.stdout == json.dumps(entry) + "\n"  # default separators, one object per line

    table = cli(["list-all", "--round", "24", "--table", *CHAIN], tmp_path)
    assert table.exit_code == 0
    assert "Revealed commitments — round 24" in table.stdout
    assert entry["hotkey"][:6] + "…" + entry["hotkey"][-4:] in table.stdout and SHA[:10] in table.stdout
    assert "✗" in table.stdout
    assert table.stdout.rstrip().endswith("1 commitments  0 sufficient  1 insufficient  0 unknown")

    # the printed manifest, run by 404-run, lists the same
    printed = cli(["list-all", "--round", "24", *CHAIN, "--print-manifest"], tmp_path)
    (tmp_path / "list-all.yaml").write_text(printed.stdout)
    again = run_cli(["run", "list-all.yaml"], cwd=tmp_path)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert (tmp_path / ".runner404/classic/list-all/commitments.jsonl").read_text() == listed.stdout


def test_list_all_prompts_on_a_terminal(tmp_path):
    chain(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO("twenty\n24\n"), stdout=out, stderr=err, environ=dict(os.environ),
                      cwd=tmp_path, stdin_isatty=True, stdout_isatty=False, stderr_isatty=False)
    assert classic.main(["list-all", *CHAIN], env) == 0
    assert out.getvalue() == ""  # no commitments in round 24, and the prompt is not on stdout (D4)
    assert err.getvalue().count("Enter round number: ") == 2


def test_empty_round_prints_nothing(tmp_path):
    chain(tmp_path)
    result = cli(["-vv", "list-all", "--round", "23", *CHAIN], tmp_path)
    assert (result.exit_code, result.stdout) == (0, "")
    assert 'debug: {"t": ' in result.stderr and '"event": "run_finished"' in result.stderr  # -vv: every event


def test_repo_before_hash_is_refused(tmp_path, cdn):
    chain(tmp_path)
    result = cli(["commit-repo-cdn", "--repo", "me/gen", "--cdn-url", f"{cdn}/state.json", *WALLET, *CHAIN], tmp_path)
    assert result.exit_code == 1
    assert one_json(result) == {"success": False,
                                "error": "You have not committed hash for round 24. Please commit hash first."}


def test_an_unregistered_hotkey_is_refused(tmp_path):
    chain(tmp_path, register=False)
    result = cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN], tmp_path)
    assert result.exit_code == 1
    error = one_json(result)
    assert error["success"] is False and error["error"].startswith("AccountNotAllowedCommit")


@pytest.mark.parametrize("command", [["commit-hash", "--hash", SHA, *WALLET], ["list-all", "--round", "24"]])
def test_a_state_that_cannot_be_fetched(tmp_path, cdn, command):
    chain(tmp_path)
    result = cli([*command, "--subtensor.endpoint", "sim:chain.json", "--competition-url", f"{cdn}/missing"],
                 tmp_path)
    assert result.exit_code == 1
    assert one_json(result) == {
        "success": False,
        "error": f"Failed to fetch state: Failed to fetch state.json from {cdn}/missing/state.json: HTTP 404 File not found"}
    assert "Traceback" not in result.stderr


def test_an_inaccessible_cdn_is_refused_unless_the_check_is_skipped(tmp_path, cdn):
    chain(tmp_path)
    assert cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN], tmp_path).exit_code == 0
    advance(tmp_path)
    argv = ["commit-repo-cdn", "--repo", "me/gen", "--cdn-url", f"{cdn}/no-such-file", *WALLET, *CHAIN]
    refused = cli(argv, tmp_path)
    assert refused.exit_code == 1
    assert one_json(refused)["error"] == f"CDN URL {cdn}/no-such-file is not accessible: 404"
    skipped = cli([*argv, "--skip-cdn-check"], tmp_path)
    assert skipped.exit_code == 0, skipped.stdout
    assert one_json(skipped)["cdn_url"] == f"{cdn}/no-such-file"


def test_committing_before_the_reveal_window_is_refused(tmp_path):
    chain(tmp_path, block=8582000)
    result = cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN], tmp_path)
    assert result.exit_code == 1
    assert one_json(result)["error"] == "Current block 8582000 is before the earliest reveal block 8582366"


def test_a_commit_straddling_the_round_boundary_needs_force(tmp_path):
    chain(tmp_path, block=8603963)  # the reveal would land after round 24's latest reveal block (D3)
    refused = cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN], tmp_path)
    assert refused.exit_code == 1 and "--force" in one_json(refused)["error"]
    forced = cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN, "--force"], tmp_path)
    assert forced.exit_code == 0, forced.stdout
    assert one_json(forced)["round"] == 25
    assert "WARNING: Block 8603963 is within round 24's reveal window" in forced.stderr


def test_a_round_not_yet_revealed(tmp_path):
    chain(tmp_path)
    result = cli(["list-all", "--round", "30", *CHAIN], tmp_path)
    assert result.exit_code == 1
    assert one_json(result)["error"] == "Round 30 is not yet revealed. Next round is 25."


def test_a_missing_rehearsal_chain_is_an_error_json(tmp_path):
    result = cli(["list-all", "--round", "24", *CHAIN], tmp_path)  # no chain.json
    assert result.exit_code == 1
    assert "chain.json does not exist" in one_json(result)["error"]
    assert "Traceback" not in result.stderr  # D5


def _published(folder):
    """A CDN folder with `<stem>.js` for every stem of round 24."""
    from runner404.prompts import stem_from_url

    folder.mkdir()
    stems = [stem_from_url(url) for url in (FIXTURES / "competition/rounds/24/prompts.txt").read_text().split()]
    for stem in stems:
        (folder / f"{stem}.js").write_text("export default function generate(THREE) { return new THREE.Group(); }\n")
    return stems


@pytest.mark.parametrize("case", ["all present", "one missing", "one missing, forced"])
def test_preflight_checks_every_stem_of_the_round(tmp_path, case):
    from runner404.sim.cdn import start_cdn

    chain(tmp_path)
    stems = _published(tmp_path / "cdn")
    if case != "all present":
        (tmp_path / "cdn" / f"{stems[2]}.js").unlink()
    server = start_cdn(tmp_path / "cdn")
    try:
        assert cli(["commit-hash", "--hash", SHA, *WALLET, *CHAIN], tmp_path).exit_code == 0
        advance(tmp_path)
        argv = ["commit-repo-cdn", "--repo", "me/gen", "--cdn-url", server.url, "--preflight", "--skip-cdn-check",
                *WALLET, *CHAIN] + (["--force"] if case.endswith("forced") else [])
        result = cli(argv, tmp_path)
        answer = one_json(result)
        if case == "one missing":
            assert result.exit_code == 1
            assert answer["success"] is False
            assert f"the validators would find {len(stems) - 1}/{len(stems)} stems" in answer["error"]
            assert f"{stems[2]}.js: HTTP 404" in answer["error"]
        else:
            assert result.exit_code == 0, result.stdout + result.stderr
            assert answer["success"] and answer["repo"] == "me/gen"
    finally:
        server.stop()
