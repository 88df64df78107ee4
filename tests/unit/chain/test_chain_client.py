"""ChainClient plumbing: open_chain, ChainError, receipts, wallets without bittensor, FakeChain."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from runner404.chain import client as client_module
from runner404.chain import wallets
from runner404.chain.client import (ChainClient, ChainError, CommitReceipt, WalletNotFound,
                                    WalletRef, open_chain)
from runner404.chain.codec import PayloadError, commit_payload, parse_commitments, repo_cdn_payload
from runner404.chain.fake import FakeChain
from runner404.chain.rehearsal import RehearsalChain
from runner404.errors import ExitCode, InfraError, Runner404Error, UsageError

SHA = "0123456789abcdef0123456789abcdef01234567"
WALLET = WalletRef("miner", "hot1")


# --- open_chain ---------------------------------------------------------------------------------

def test_sim_endpoint_opens_the_rehearsal_chain(tmp_path):
    chain = open_chain(f"sim:{tmp_path / 'chain.json'}")
    assert isinstance(chain, RehearsalChain) and isinstance(chain, ChainClient)
    assert chain.path == tmp_path / "chain.json"


@pytest.mark.parametrize("endpoint", ["", "   ", "sim:"])
def test_empty_endpoints_are_usage_errors(endpoint):
    with pytest.raises(UsageError):
        open_chain(endpoint)


def test_real_endpoints_need_the_adapter(monkeypatch):
    monkeypatch.setattr(client_module, "ADAPTER_MODULE", "runner404.chain._no_such_adapter")
    with pytest.raises(Runner404Error) as err:
        open_chain("finney")
    assert str(err.value).startswith("bittensor support is not installed")
    assert "sim:PATH" in str(err.value) and "'finney'" in str(err.value)
    assert err.value.exit_code == ExitCode.FAILED


def _fake_adapter(monkeypatch, opener) -> None:
    module = types.ModuleType("runner404.chain._test_adapter")
    module.open_chain = opener  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(client_module, "ADAPTER_MODULE", module.__name__)


def test_adapter_without_bittensor_installed(monkeypatch):
    def opener(endpoint):
        raise ModuleNotFoundError("No module named 'bittensor'", name="bittensor")

    _fake_adapter(monkeypatch, opener)
    with pytest.raises(Runner404Error, match="^bittensor support is not installed"):
        open_chain("wss://entrypoint-finney.opentensor.ai:443")


def test_adapter_is_called_with_the_endpoint(monkeypatch):
    fake = FakeChain()
    seen = []
    _fake_adapter(monkeypatch, lambda endpoint: seen.append(endpoint) or fake)
    assert open_chain(" test ") is fake and seen == ["test"]


def test_other_missing_modules_are_not_disguised(monkeypatch):
    def opener(endpoint):
        raise ModuleNotFoundError("No module named 'yaml2'", name="yaml2")

    _fake_adapter(monkeypatch, opener)
    with pytest.raises(ModuleNotFoundError):
        open_chain("finney")


def test_the_chain_package_never_imports_bittensor(tmp_path):
    code = (
        "import sys\n"
        "from runner404.chain import client, codec, competition, fake, pallet, rehearsal, wallets\n"
        f"rehearsal.init({str(tmp_path / 'c.json')!r})\n"
        f"client.open_chain('sim:{tmp_path / 'c.json'}').current_block()\n"
        "try:\n    client.open_chain('finney')\nexcept Exception:\n    pass\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('bittensor', 'bittensor_core')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- errors and receipts ------------------------------------------------------------------------

def test_chain_error_names_and_exit_codes():
    err = ChainError("ConnectionError", "could not connect")
    assert isinstance(err, InfraError) and err.exit_code == ExitCode.INFRA
    assert (err.name, err.description, str(err)) == ("ConnectionError", "could not connect",
                                                      "ConnectionError: could not connect")
    for name in ("AccountNotAllowedCommit", "SpaceLimitExceeded"):
        assert ChainError(name, "x").exit_code == ExitCode.FAILED
    assert str(ChainError("Bare")) == "Bare"


def test_receipt_raise_for_failure():
    ok = CommitReceipt(True, 10, "10-1", 12, "fine")
    assert ok.raise_for_failure() is ok and ok.error_name is None
    bad = CommitReceipt(False, 10, "10-1", None, "not registered", "AccountNotAllowedCommit")
    with pytest.raises(ChainError) as err:
        bad.raise_for_failure()
    assert err.value.name == "AccountNotAllowedCommit" and err.value.exit_code == 1
    with pytest.raises(ChainError, match="^CommitFailed$"):
        CommitReceipt(False).raise_for_failure()


def test_wallet_ref_defaults():
    ref = WalletRef("cold", "hot")
    assert ref.path == "~/.bittensor/wallets"
    assert ref.hotkey_file == ref.folder / "hotkeys" / "hot"


# --- wallets without bittensor ------------------------------------------------------------------

def test_ss58_encoding_matches_the_known_alice_address():
    alice = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
    assert wallets.ss58_encode(alice) == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_stand_in_addresses_are_deterministic_and_distinct(tmp_path):
    hot = wallets.hotkey_address(WalletRef("miner", "hot1", str(tmp_path)))
    assert hot == wallets.hotkey_address(WalletRef("miner", "hot1", str(tmp_path / "elsewhere")))
    assert hot == wallets.fake_address("hotkey", "miner", "hot1")
    assert len(hot) == 48 and hot.startswith("5")
    others = {wallets.hotkey_address(WalletRef("miner", "hot2", str(tmp_path))),
              wallets.coldkey_address(WalletRef("miner", "hot1", str(tmp_path))),
              wallets.hotkey_address(WalletRef("miner2", "hot1", str(tmp_path)))}
    assert hot not in others and len(others) == 3


def test_keyfiles_are_read_when_present(tmp_path):
    ref = WalletRef("real", "default", str(tmp_path))
    hot, cold = wallets.write_keyfiles(ref, "5HotReal" + "x" * 40, "5ColdReal" + "y" * 39)
    assert wallets.hotkey_address(ref) == hot
    assert wallets.coldkey_address(ref) == cold
    assert oct((tmp_path / "real" / "hotkeys" / "default").stat().st_mode & 0o777) == "0o600"


def test_full_bittensor_style_keyfile(tmp_path):
    ref = WalletRef("w", "h", str(tmp_path))
    (tmp_path / "w" / "hotkeys").mkdir(parents=True)
    (tmp_path / "w" / "hotkeys" / "h").write_text(json.dumps({
        "accountId": "0x00", "publicKey": "0x00", "secretPhrase": "words", "secretSeed": "0x00",
        "ss58Address": "5FullKeyfile" + "z" * 36}))
    (tmp_path / "w" / "coldkeypub.txt").write_text("5ColdPlain" + "q" * 38)
    assert wallets.hotkey_address(ref) == "5FullKeyfile" + "z" * 36
    assert wallets.coldkey_address(ref) == "5ColdPlain" + "q" * 38


def test_encrypted_hotkey_falls_back_to_its_pub_file(tmp_path):
    ref = WalletRef("w", "h", str(tmp_path))
    folder = tmp_path / "w" / "hotkeys"
    folder.mkdir(parents=True)
    (folder / "h").write_bytes(b"$NACL\x00\x01encrypted")
    with pytest.raises(UsageError, match="no readable ss58Address"):
        wallets.hotkey_address(ref)
    (folder / "hpub.txt").write_text(json.dumps({"ss58Address": "5Pub" + "p" * 44}))
    assert wallets.hotkey_address(ref) == "5Pub" + "p" * 44


# --- FakeChain ----------------------------------------------------------------------------------

@pytest.fixture
def chain() -> FakeChain:
    fake = FakeChain(100)
    hot, cold = fake.add_wallet(WALLET)
    fake.register(hot, coldkey=cold)
    return fake


def test_fake_chain_is_a_chain_client():
    assert isinstance(FakeChain(), ChainClient)


def test_commit_then_reveal_two_blocks_later(chain):
    receipt = chain.commit(WALLET, 17, commit_payload(SHA))
    assert receipt == CommitReceipt(True, 101, "101-1", 103,
                                    "included in block 101; reveals at block 103", None)
    assert chain.revealed_commitments(17) == {}
    chain.advance(1)
    assert chain.revealed_commitments(17) == {}
    chain.advance(1)
    hot = chain.hotkey_address(WALLET)
    assert chain.revealed_commitments(17) == {hot: [(103, commit_payload(SHA))]}


def test_unregistered_hotkey_is_not_allowed(chain):
    other = WalletRef("stranger", "hot")
    receipt = chain.commit(other, 17, commit_payload(SHA))
    assert (receipt.success, receipt.error_name) == (False, "AccountNotAllowedCommit")
    assert "is not registered on netuid 17" in receipt.message
    receipt = chain.commit(WALLET, 3, commit_payload(SHA))
    assert receipt.error_name == "AccountNotAllowedCommit" and "netuid 3 does not exist" in receipt.message


def test_oversized_payload_is_refused_before_submission(chain):
    with pytest.raises(PayloadError, match="is 800 bytes"):
        chain.commit(WALLET, 17, json.dumps({"repo": "x" * 788}))
    assert chain.block == 100


def test_space_quota_per_epoch(chain):
    payload = commit_payload(SHA)  # 54 bytes → 55 framed + 244 = 299 bytes of quota
    results = [chain.commit(WALLET, 17, payload) for _ in range(11)]
    assert all(r.success for r in results[:10])
    assert results[10].error_name == "SpaceLimitExceeded"
    assert "2990 of 3100 bytes used, this commitment needs 299" in results[10].message
    chain.advance(361)
    assert chain.commit(WALLET, 17, payload).success


def test_a_second_commit_replaces_the_pending_one(chain):
    chain.commit(WALLET, 17, commit_payload(SHA))
    receipt = chain.commit(WALLET, 17, repo_cdn_payload("o/m", "https://c"))
    assert "replaces the commitment from block 101" in receipt.message
    chain.advance(5)
    (history,) = chain.revealed_commitments(17).values()
    assert [text for _, text in history] == [repo_cdn_payload("o/m", "https://c")]


def test_commit_error_knob(chain):
    chain.commit_error = "SpaceLimitExceeded"
    receipt = chain.commit(WALLET, 17, commit_payload(SHA))
    assert (receipt.success, receipt.error_name, receipt.block) == (False, "SpaceLimitExceeded", 101)
    with pytest.raises(ChainError) as err:
        receipt.raise_for_failure()
    assert err.value.name == "SpaceLimitExceeded"


def test_unreachable_knob(chain):
    chain.unreachable = True
    for call in (chain.current_block, lambda: chain.revealed_commitments(17),
                 lambda: chain.commit(WALLET, 17, commit_payload(SHA)),
                 lambda: chain.coldkey_lock("x", 17)):
        with pytest.raises(ChainError) as err:
            call()
        assert err.value.name == "ConnectionError" and err.value.exit_code == ExitCode.INFRA


def test_failing_query_knob(chain):
    cold = chain.coldkey_address(WALLET)
    chain.set_lock(cold, 250.5)
    chain.fail("coldkey_lock", message="lock query failed")
    with pytest.raises(ChainError, match="QueryError: lock query failed"):
        chain.coldkey_lock(cold, 17)
    chain.recover("coldkey_lock")
    assert chain.coldkey_lock(cold, 17) == 250.5
    assert chain.coldkey_lock(cold, 18) == 0.0
    assert chain.coldkey_lock("nobody", 17) == 0.0


def test_owners_and_owned_hotkeys(chain):
    hot, cold = chain.hotkey_address(WALLET), chain.coldkey_address(WALLET)
    chain.register(["5Second" + "s" * 41], coldkey=cold)
    chain.register(["5Orphan" + "o" * 41])
    assert chain.hotkey_owner(hot) == cold
    assert chain.hotkey_owner("5Orphan" + "o" * 41) is None
    assert chain.owned_hotkeys(cold) == [hot, "5Second" + "s" * 41]
    assert chain.owned_hotkeys("nobody") == []


def test_missing_wallet_files_knob(tmp_path):
    fake = FakeChain()
    fake.require_wallet_files = True
    ref = WalletRef("absent", "hot", str(tmp_path))
    with pytest.raises(WalletNotFound) as err:
        fake.hotkey_address(ref)
    assert str(err.value) == f"keyfile at '{tmp_path / 'absent' / 'hotkeys' / 'hot'}' does not exist"
    wallets.write_keyfiles(ref)
    assert fake.hotkey_address(ref) == wallets.fake_address("hotkey", "absent", "hot")


def test_auto_advance_reveals_while_polling(chain):
    chain.commit(WALLET, 17, commit_payload(SHA))
    chain.auto_advance = 1
    polls = 0
    while not chain.revealed_commitments(17):
        chain.current_block()
        polls += 1
    assert polls == 2


def test_put_revealed_in_every_form_and_parsing(chain):
    chain.put_revealed("5K1", commit_payload(SHA), 10)  # framed, stored bytes are hex-only
    chain.put_revealed("5K2", '{"commit": "x"}', 11)  # framed, node returns text
    chain.put_revealed("5K3", '{"repo":"org/model","cdn_url":"https://c"}', 12, framed=False)
    chain.put_revealed("5K4", b"\x02\x00", 13)  # garbage
    revealed = chain.revealed_commitments(17)
    raw = chain.state.revealed_raw(17)
    assert raw["5K1"][0][0].startswith("0x") and raw["5K2"][0][0] == '<{"commit": "x"}'
    assert revealed["5K3"] == [(12, 'po":"org/model","cdn_url":"https://c"}')]
    entries = parse_commitments(revealed, None)
    assert [(e.hotkey, e.commit_hash) for e in entries] == [("5K1", SHA), ("5K2", "x")]


def test_calls_are_recorded(chain):
    chain.current_block()
    chain.hotkey_owner("5X")
    assert [name for name, _ in chain.calls] == ["current_block", "hotkey_owner"]
