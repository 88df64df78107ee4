"""The rehearsal chain (`sim:PATH`): a JSON file on disk, driven through the ChainClient API and
the management functions, including concurrent writers from separate processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner404.chain import rehearsal, wallets
from runner404.chain.client import ChainError, WalletRef, open_chain
from runner404.chain.codec import (PayloadError, commit_payload, decode_revealed, frame,
                                   parse_commitments, repo_cdn_payload)
from runner404.chain.competition import Competition, round_to_commit
from runner404.errors import Runner404Error, UsageError

SHA = "89e6c98d92887913cadf06b2adb97f26cde4849b"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "competition"


@pytest.fixture
def wallet(tmp_path) -> WalletRef:
    return WalletRef("miner", "hot1", str(tmp_path / "wallets"))


@pytest.fixture
def chain_file(tmp_path, wallet) -> Path:
    path = tmp_path / "rehearsal" / "chain.json"
    rehearsal.init(path, block=1000, register=[wallet])
    return path


def stored(path: Path) -> dict:
    return json.loads(path.read_text())


# --- management ---------------------------------------------------------------------------------

def test_init_register_advance_show(tmp_path, wallet):
    path = tmp_path / "chain.json"
    hot = wallets.hotkey_address(wallet)
    view = rehearsal.init(path, block=500, register=["5Plain" + "p" * 42])
    assert view["block"] == 500
    assert view["subnets"]["17"]["hotkeys"] == [{"hotkey": "5Plain" + "p" * 42, "coldkey": None}]
    with pytest.raises(UsageError, match="already exists"):
        rehearsal.init(path)
    assert rehearsal.register(path, [wallet], netuid=17) == [hot]
    assert rehearsal.register(path, ["5Other" + "o" * 42], netuid=3, coldkey="5Cold") == \
        ["5Other" + "o" * 42]
    rehearsal.set_lock(path, wallets.coldkey_address(wallet), 123.5)
    assert rehearsal.advance(path, 7) == {"block": 507, "revealed": []}
    view = rehearsal.show(path)
    assert view["block"] == 507 and list(view["subnets"]) == ["3", "17"]
    assert view["subnets"]["17"]["hotkeys"][1] == {"hotkey": hot,
                                                   "coldkey": wallets.coldkey_address(wallet)}
    assert view["locks"] == {wallets.coldkey_address(wallet): {"17": 123.5}}
    chain = open_chain(f"sim:{path}")
    assert chain.current_block() == 507
    assert chain.hotkey_owner(hot) == wallets.coldkey_address(wallet)
    assert chain.hotkey_owner("5Other" + "o" * 42) == "5Cold"
    assert chain.owned_hotkeys("5Cold") == ["5Other" + "o" * 42]
    assert chain.coldkey_lock(wallets.coldkey_address(wallet), 17) == 123.5
    assert chain.coldkey_lock(wallets.coldkey_address(wallet), 3) == 0.0
    view = rehearsal.init(path, block=9, overwrite=True)
    assert view["block"] == 9 and view["subnets"]["17"]["hotkeys"] == []


def test_file_is_plain_json_with_a_format_tag(chain_file):
    data = stored(chain_file)
    assert (data["format"], data["version"], data["block"]) == ("runner404-rehearsal-chain", 1, 1000)
    assert (data["tempo"], data["max_space"]) == (360, 3100)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        open_chain(f"sim:{tmp_path / 'nope.json'}").current_block()
    assert not (tmp_path / "nope.json.lock").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(Runner404Error, match="is not valid JSON"):
        rehearsal.show(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(Runner404Error, match="is not a runner404 rehearsal chain"):
        rehearsal.advance(bad, 1)
    for value in (-1, True, "5"):
        with pytest.raises(UsageError):
            rehearsal.init(tmp_path / "x.json", block=value)  # type: ignore[arg-type]


# --- commits ------------------------------------------------------------------------------------

def test_commit_is_revealed_two_blocks_later(chain_file, wallet):
    chain = open_chain(f"sim:{chain_file}")
    hot = chain.hotkey_address(wallet)
    receipt = chain.commit(wallet, 17, commit_payload(SHA))
    assert (receipt.success, receipt.block, receipt.reveal_block, receipt.extrinsic_id) == \
        (True, 1001, 1003, "1001-1")
    pending = stored(chain_file)["subnets"]["17"]["pending"][hot]
    assert pending == {"data": "0x" + frame(commit_payload(SHA)).hex(), "block": 1001,
                       "reveal_block": 1003}
    assert chain.revealed_commitments(17) == {}
    assert chain.current_block() == 1001  # reads never advance
    assert rehearsal.advance(chain_file, 1) == {"block": 1002, "revealed": []}
    assert chain.revealed_commitments(17) == {}
    assert rehearsal.advance(chain_file, 1) == {
        "block": 1003, "revealed": [{"netuid": 17, "hotkey": hot, "block": 1003}]}
    value, block = stored(chain_file)["subnets"]["17"]["revealed"][hot][0]
    assert value == "0x" + frame(commit_payload(SHA)).hex() and block == 1003
    assert decode_revealed(value) == commit_payload(SHA)
    assert chain.revealed_commitments(17) == {hot: [(1003, commit_payload(SHA))]}
    assert stored(chain_file)["subnets"]["17"]["pending"] == {}
    view = rehearsal.show(chain_file)
    assert view["subnets"]["17"]["revealed"] == [
        {"hotkey": hot, "block": 1003, "text": commit_payload(SHA), "stored": value}]


def test_a_later_commit_reveals_what_is_due_first(chain_file, wallet):
    chain = open_chain(f"sim:{chain_file}")
    chain.commit(wallet, 17, commit_payload(SHA))  # block 1001, reveals at 1003
    rehearsal.advance(chain_file, 2)  # 1003: revealed
    chain.commit(wallet, 17, repo_cdn_payload("org/model", "https://cdn.example.com/m"))  # 1004
    rehearsal.advance(chain_file, 10)
    (history,) = chain.revealed_commitments(17).values()
    assert history == [(1003, commit_payload(SHA)),
                       (1006, repo_cdn_payload("org/model", "https://cdn.example.com/m"))]


def test_unregistered_hotkey_gets_account_not_allowed_commit(chain_file, tmp_path):
    chain = open_chain(f"sim:{chain_file}")
    stranger = WalletRef("stranger", "default", str(tmp_path / "wallets"))
    receipt = chain.commit(stranger, 17, commit_payload(SHA))
    assert (receipt.success, receipt.error_name, receipt.block) == \
        (False, "AccountNotAllowedCommit", 1001)
    with pytest.raises(ChainError) as err:
        receipt.raise_for_failure()
    assert err.value.name == "AccountNotAllowedCommit" and err.value.exit_code == 1
    assert stored(chain_file)["subnets"]["17"]["pending"] == {}
    assert chain.commit(stranger, 99, commit_payload(SHA)).error_name == "AccountNotAllowedCommit"


def test_oversized_payload_changes_nothing(chain_file, wallet):
    before = chain_file.read_bytes()
    with pytest.raises(PayloadError) as err:
        open_chain(f"sim:{chain_file}").commit(wallet, 17, json.dumps({"repo": "r" * 770}))
    assert "is 782 bytes" in str(err.value) and "at most 778 bytes" in str(err.value)
    assert chain_file.read_bytes() == before
    receipt = open_chain(f"sim:{chain_file}").commit(wallet, 17, json.dumps({"r": "r" * 769}))
    assert receipt.success  # exactly 778 bytes


def test_space_limit_per_epoch(chain_file, wallet):
    chain = open_chain(f"sim:{chain_file}")
    big = json.dumps({"repo": "o/r", "cdn_url": "https://c/" + "a" * 700})  # ~1000 quota bytes
    results = [chain.commit(wallet, 17, big) for _ in range(4)]
    assert [r.success for r in results] == [True, True, True, False]
    assert results[3].error_name == "SpaceLimitExceeded"


def test_history_keeps_the_ten_most_recent_reveals(tmp_path, wallet):
    path = tmp_path / "chain.json"
    rehearsal.init(path, block=1, register=[wallet], max_space=10**6)
    chain = open_chain(f"sim:{path}")
    hashes = [f"{i:040x}" for i in range(12)]
    for sha in hashes:
        assert chain.commit(wallet, 17, commit_payload(sha)).success
        rehearsal.advance(path, 2)
    (history,) = chain.revealed_commitments(17).values()
    assert len(history) == 10
    assert [json.loads(text)["commit"] for _, text in history] == hashes[2:]
    assert [block for block, _ in history] == sorted(block for block, _ in history)
    (entry,) = parse_commitments(chain.revealed_commitments(17), None)
    assert entry.commit_hash == hashes[-1]


def test_real_keyfiles_give_the_wallet_its_real_address(tmp_path):
    ref = WalletRef("real", "default", str(tmp_path / "wallets"))
    hot, cold = wallets.write_keyfiles(ref, "5RealHot" + "h" * 40, "5RealCold" + "c" * 39)
    path = tmp_path / "chain.json"
    rehearsal.init(path, register=[ref])
    chain = open_chain(f"sim:{path}")
    assert chain.hotkey_address(ref) == hot and chain.coldkey_address(ref) == cold
    assert chain.hotkey_owner(hot) == cold
    assert chain.commit(ref, 17, commit_payload(SHA)).success


def test_rehearsal_of_a_round_with_the_fixture_competition(tmp_path, wallet):
    """commit-hash, commit-repo-cdn, then list-all for round 24, all offline."""
    comp = Competition(FIXTURE)
    state = comp.state()
    schedule = comp.schedule(state.current_round)
    path = tmp_path / "chain.json"
    rehearsal.init(path, block=schedule.earliest_reveal_block + 100, register=[wallet])
    chain = open_chain(f"sim:{path}")
    choice = round_to_commit(state.current_round, schedule, chain.current_block())
    assert (choice.round, choice.straddles) == (24, False)
    chain.commit(wallet, 17, commit_payload(SHA)).raise_for_failure()
    rehearsal.advance(path, 2)
    chain.commit(wallet, 17, repo_cdn_payload("org/model", "https://cdn.example.com/m"))
    rehearsal.advance(path, 2)
    entries = parse_commitments(chain.revealed_commitments(17), comp.window(24))
    assert [e.as_dict() for e in entries] == [{
        "hotkey": chain.hotkey_address(wallet), "commit_hash": SHA,
        "commit_block": schedule.earliest_reveal_block + 103, "repo": "org/model",
        "repo_block": schedule.earliest_reveal_block + 106,
        "cdn_url": "https://cdn.example.com/m", "cdn_block": schedule.earliest_reveal_block + 106}]
    assert parse_commitments(chain.revealed_commitments(17), comp.window(25)) == []


# --- concurrency --------------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys
    from runner404.chain import rehearsal
    from runner404.chain.client import WalletRef, open_chain
    from runner404.chain.codec import commit_payload

    path, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    wallet = WalletRef(name, "hot", sys.argv[4])
    chain = open_chain("sim:" + path)
    for i in range(rounds):
        rehearsal.advance(path, 1)
        receipt = chain.commit(wallet, 17, commit_payload(f"{i:040x}"))
        assert receipt.success, receipt
        chain.revealed_commitments(17)
""")


def test_concurrent_writers_from_two_processes(tmp_path):
    path = tmp_path / "chain.json"
    wallet_dir = str(tmp_path / "wallets")
    refs = [WalletRef(name, "hot", wallet_dir) for name in ("alpha", "beta")]
    rehearsal.init(path, block=100, register=refs, max_space=10**7)
    rounds = 150
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), ref.name, str(rounds),
                                 wallet_dir], stderr=subprocess.PIPE, text=True)
               for ref in refs]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    data = stored(path)  # valid JSON, nothing lost
    assert data["block"] == 100 + 2 * rounds * 2
    rehearsal.advance(path, 5)
    revealed = open_chain(f"sim:{path}").revealed_commitments(17)
    assert set(revealed) == {wallets.hotkey_address(ref) for ref in refs}
    for history in revealed.values():
        assert 1 <= len(history) <= 10
        assert json.loads(history[-1][1]) == {"commit": f"{rounds - 1:040x}"}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
