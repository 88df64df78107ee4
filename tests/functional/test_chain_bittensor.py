"""The bittensor 11 layer, offline (chain.md §11, §12 items 2 and 4).

1. The crypto contract, with `bittensor_core` only: frame → timelock-encrypt to drand quicknet
   round 1000 → decrypt with that round's published signature → `decode_revealed`.
2. The adapter contract: `bittensor_adapter.open_chain(..., substrate=FakeSubstrate())` drives the
   real SDK (`bt.Subtensor`, `submit_call(signer="hotkey")`, `bt.Wallet` keyfiles, the read
   registry) against a dict-backed `bittensor.Substrate` (tests/fixtures/fake_substrate.py).

Nothing here connects anywhere except a closed port on 127.0.0.1. HOME and bittensor's token
symbol cache point into a temporary folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner404.chain import client as client_module
from runner404.chain.client import ChainClient, ChainError, WalletNotFound, WalletRef
from runner404.chain.codec import (PayloadError, commit_payload, decode_revealed, frame,
                                   parse_commitments, repo_cdn_payload)
from runner404.errors import ExitCode, UsageError

ROOT = Path(__file__).resolve().parents[2]
SHA = "89e6c98d92887913cadf06b2adb97f26cde4849b"
NETUID = 17

# drand quicknet, round 1000 (chain.md §11)
ROUND = 1000
SIGNATURE = ("b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125"
             "e342b73a8dd2bacbe47e4b6b63ed5e39")
RANDOMNESS = "fe290beca10872ef2fb164d2aa4442de4566183ec51c56ff3cd603d930e54fdd"
# The compressed BLS12-381 G1 generator: a valid point, but not round 1000's signature.
G1_GENERATOR = ("97f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac58"
                "6c55e83ff97a1aeffb3af00adb22c6bb")

PAYLOADS = {
    "commit (<64 bytes, 1-byte prefix)": commit_payload(SHA),
    "repo+cdn (≥64 bytes, 2-byte prefix)": repo_cdn_payload(
        "mokabetrade/ansible-foundry", "https://cdn.example.com/miners/ansible-foundry"),
}


def _load_fake_substrate():
    path = ROOT / "tests" / "fixtures" / "fake_substrate.py"
    spec = importlib.util.spec_from_file_location("runner404_test_fake_substrate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- 1. crypto contract (bittensor_core only) ---------------------------------------------------

def test_round_1000_constants_are_consistent():
    # quicknet (unchained): randomness = sha256(signature)
    assert hashlib.sha256(bytes.fromhex(SIGNATURE)).hexdigest() == RANDOMNESS


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_timelock_round_trip_at_round_1000(payload):
    import bittensor_core

    framed = frame(payload)
    assert len(framed) == len(payload) + (1 if len(payload) < 64 else 2)
    envelope, reveal_round = bittensor_core.encrypt_at_round(framed, ROUND)
    assert reveal_round == ROUND
    inner = bittensor_core.inner_ciphertext(envelope)
    assert len(inner) == len(framed) + 244  # what the pallet stores as TimelockEncrypted.encrypted
    decrypted = bytes(bittensor_core.decrypt_with_signature(envelope, SIGNATURE))
    assert decrypted == framed
    assert decode_revealed(decrypted) == payload
    assert json.loads(decode_revealed(decrypted)) == json.loads(payload)


def test_unframed_json_comes_back_mangled():
    import bittensor_core

    payload = json.dumps({"repo": "org/model", "cdn_url": "https://cdn.example.com/m"})
    envelope, _ = bittensor_core.encrypt_at_round(payload.encode(), ROUND)
    decrypted = bytes(bittensor_core.decrypt_with_signature(envelope, SIGNATURE))
    assert decrypted == payload.encode()  # the crypto is fine ...
    text = decode_revealed(decrypted)  # ... but '{' reads as a 4-byte length prefix
    assert text != payload and text == payload[4:] and text.startswith('po": "org/model"')
    with pytest.raises(ValueError):
        json.loads(text)


@pytest.mark.parametrize("signature", [G1_GENERATOR, "00" * 48],
                         ids=["valid point, wrong signature", "not a point"])
def test_a_wrong_signature_does_not_decrypt(signature):
    import bittensor_core

    envelope, _ = bittensor_core.encrypt_at_round(frame(commit_payload(SHA)), ROUND)
    with pytest.raises(ValueError):
        bittensor_core.decrypt_with_signature(envelope, signature)


# --- 2. adapter contract -----------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private HOME; bittensor's token symbol cache (the one file its connect writes when the
    backend is injected) goes there too, even if bittensor was imported under another HOME."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(path / ".bittensor" / "symbols.json"))
    monkeypatch.delenv("BT_CHAIN_ENDPOINT", raising=False)
    monkeypatch.delenv("BT_WALLET_PASSWORD", raising=False)
    return path


@pytest.fixture
def wallet(home):
    """A real keyfile wallet (unencrypted coldkey and hotkey) under the temporary HOME."""
    import bittensor as bt

    ref = WalletRef("miner", "hot1", str(home / ".bittensor" / "wallets"))
    w = bt.Wallet(ref.name, ref.hotkey, ref.path)
    w.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    w.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return ref, w


@pytest.fixture
def fake_module():
    return _load_fake_substrate()


@pytest.fixture
def fake(fake_module, wallet):
    _, w = wallet
    substrate = fake_module.FakeSubstrate(block=5000)
    substrate.register(NETUID, w.hotkey.ss58_address, w.coldkeypub.ss58_address)
    return substrate


@pytest.fixture
def chain(fake, home):
    from runner404.chain.bittensor_adapter import open_chain

    adapter = open_chain("local", substrate=fake)
    yield adapter
    adapter.close()


def test_the_adapter_is_a_chain_client(chain):
    assert isinstance(chain, ChainClient)
    assert chain.current_block() == 5000


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_commit_submits_a_hotkey_signed_timelocked_set_commitment(chain, fake, wallet, home,
                                                                  payload, capfd):
    import bittensor as bt

    ref, w = wallet
    before = bt.timelock.current_round()
    receipt = chain.commit(ref, NETUID, payload, blocks_until_reveal=2)
    after = bt.timelock.current_round()

    assert receipt.success and receipt.error_name is None
    assert (receipt.block, receipt.extrinsic_id, receipt.reveal_block) == (5001, "5001-0001", 5003)
    [sent] = fake.submitted
    module, function, params = sent["call"]
    assert (module, function) == ("Commitments", "set_commitment")
    assert set(params) == {"netuid", "info"} and params["netuid"] == NETUID
    [[field]] = params["info"]["fields"]
    assert list(field) == ["TimelockEncrypted"]
    sealed = field["TimelockEncrypted"]
    assert set(sealed) == {"encrypted", "reveal_round"}
    assert sent["call"] == ("Commitments", "set_commitment", {"netuid": NETUID, "info": {
        "fields": [[{"TimelockEncrypted": {"encrypted": sealed["encrypted"],
                                           "reveal_round": sealed["reveal_round"]}}]]}})
    # signed by the hotkey (not the coldkey, submit_call's default), sr25519 → 64 bytes
    assert sent["signer"] == w.hotkey.ss58_address == chain.hotkey_address(ref)
    assert sent["signer"] != w.coldkeypub.ss58_address
    assert len(sent["signature"]) == 64
    assert w.hotkey.verify(sent["payload"], sent["signature"])
    # drand round ~2 blocks × 12 s ahead (3 s rounds); ciphertext = SCALE(str) + 244 bytes
    assert before + 5 <= sealed["reveal_round"] <= after + 10
    assert isinstance(sealed["encrypted"], bytes)
    assert len(sealed["encrypted"]) == len(payload) + (245 if len(payload) < 64 else 246)
    assert len(sealed["encrypted"]) <= 1024
    # the pallet model stored the sealed commitment under the hotkey
    stored = fake.storage[("Commitments", "CommitmentOf")][(NETUID, w.hotkey.ss58_address)]
    assert stored["info"] == params["info"] and stored["block"] == 5001
    # silent, and bittensor's cache landed in the temporary HOME
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert (home / ".bittensor" / "symbols.json").is_file()


def test_an_unregistered_hotkey_is_returned_as_a_failed_receipt(fake_module, wallet, home):
    from runner404.chain.bittensor_adapter import open_chain

    ref, _ = wallet
    substrate = fake_module.FakeSubstrate(block=700)  # nothing registered
    with open_chain("test", substrate=substrate) as chain:
        receipt = chain.commit(ref, NETUID, commit_payload(SHA))
    assert not receipt.success
    assert receipt.error_name == "AccountNotAllowedCommit"
    assert "registered" in receipt.message  # bittensor's description of the pallet error
    assert (receipt.block, receipt.extrinsic_id, receipt.reveal_block) == (701, "701-0001", None)
    with pytest.raises(ChainError) as err:
        receipt.raise_for_failure()
    assert err.value.name == "AccountNotAllowedCommit" and err.value.exit_code == ExitCode.FAILED


@pytest.mark.parametrize("name, expected", [("SpaceLimitExceeded", "SpaceLimitExceeded"),
                                             (None, "ExtrinsicFailed")])
def test_other_rejections_keep_the_chain_error_name(chain, fake, wallet, monkeypatch, name,
                                                    expected):
    import bittensor as bt

    async def rejected(call, keypair, **kwargs):
        return bt.ExtrinsicResult(success=False, message="rejected", extrinsic_id="77-0003",
                                  error=bt.ChainError("rejected", name) if name else None)

    monkeypatch.setattr(fake, "submit", rejected)
    receipt = chain.commit(wallet[0], NETUID, commit_payload(SHA))
    assert (receipt.success, receipt.error_name, receipt.block) == (False, expected, 77)
    assert receipt.message  # the pallet's description, or the result's message


def test_a_transport_failure_while_submitting_raises(chain, fake, wallet, monkeypatch):
    import bittensor as bt

    async def dropped(call, keypair, **kwargs):
        raise bt.RpcConnectionError("websocket closed")

    monkeypatch.setattr(fake, "submit", dropped)
    with pytest.raises(ChainError) as err:
        chain.commit(wallet[0], NETUID, commit_payload(SHA))
    assert err.value.name == "RpcConnectionError" and "websocket closed" in str(err.value)


def test_an_oversized_payload_is_refused_before_anything_is_sent(chain, fake, wallet):
    ref, _ = wallet
    payload = json.dumps({"repo": "a/b", "cdn_url": "https://cdn.example.com/" + "x" * 760})
    assert len(payload) > 778
    with pytest.raises(PayloadError, match="at most 778 bytes"):
        chain.commit(ref, NETUID, payload)
    assert fake.submitted == [] and fake.connects == 0


def test_revealed_commitments_decode_str_and_hex_forms(chain, fake):
    hot_a, hot_b, other = "5HotA" + "a" * 43, "5HotB" + "b" * 43, "5HotC" + "c" * 43
    first = commit_payload(SHA)  # 54 bytes: prefix 0xd8, not UTF-8 → the node returns 0x-hex
    second = json.dumps({"repo": "o/r", "cdn_url": "https://c.dn/x"})  # 44: prefix 0xb0 → hex
    third = json.dumps({"commit": "ab" * 5})  # 24 bytes: prefix 0x60 '`' → the node returns str
    forms = [fake.reveal(NETUID, hot_a, first, 100), fake.reveal(NETUID, hot_a, second, 110),
             fake.reveal(NETUID, hot_b, third, 105), fake.reveal(3, other, first, 90)]
    assert [f.startswith("0x") for f in forms[:3]] == [True, True, False]
    assert len(second) == 44 and len(third) == 24 and forms[2] == "`" + third

    revealed = chain.revealed_commitments(NETUID)
    assert revealed == {hot_a: [(100, first), (110, second)], hot_b: [(105, third)]}
    assert chain.revealed_commitments(3) == {other: [(90, first)]}
    assert chain.revealed_commitments(99) == {}
    # what list-all prints from it
    rows = [entry.as_dict() for entry in parse_commitments(revealed, None)]
    assert rows == [
        {"hotkey": hot_a, "commit_hash": SHA, "commit_block": 100, "repo": "o/r",
         "repo_block": 110, "cdn_url": "https://c.dn/x", "cdn_block": 110},
        {"hotkey": hot_b, "commit_hash": "ab" * 5, "commit_block": 105, "repo": None,
         "repo_block": None, "cdn_url": None, "cdn_block": None},
    ]


def test_the_sdk_reader_agrees_with_the_raw_read(chain, fake):
    """Cross-check against bittensor's own reader (`subnets.commitments`), which strips the
    prefix itself: same texts, same blocks."""
    hotkey = "5HotA" + "a" * 43
    for block, text in ((100, commit_payload(SHA)), (120, json.dumps({"commit": "cd" * 4}))):
        fake.reveal(NETUID, hotkey, text, block)
    sdk = chain._sub.subnets.commitments(NETUID)
    assert list(sdk[hotkey].revealed) == chain.revealed_commitments(NETUID)[hotkey]


def test_lookups(chain, fake, wallet):
    _, w = wallet
    hot, cold = w.hotkey.ss58_address, w.coldkeypub.ss58_address
    assert chain.hotkey_owner(hot) == cold
    assert chain.hotkey_owner("5Unknown" + "u" * 40) is None  # the chain's all-zero default
    assert chain.owned_hotkeys(cold) == [hot]
    assert chain.owned_hotkeys("5Nobody" + "n" * 41) == []
    assert chain.coldkey_lock(cold, NETUID) == 0.0  # no lock
    fake.set_lock(cold, NETUID, hot, 1_234_500_000_000)
    assert chain.coldkey_lock(cold, NETUID) == pytest.approx(1234.5)
    assert chain.coldkey_lock(cold, 3) == 0.0


def test_a_failed_query_raises_instead_of_reading_zero(chain, fake, wallet):
    import bittensor as bt

    _, w = wallet
    chain.current_block()  # connected
    fake.read_error = bt.ChainError("state unavailable")
    for call in (lambda: chain.coldkey_lock(w.coldkeypub.ss58_address, NETUID),
                 lambda: chain.revealed_commitments(NETUID), chain.current_block,
                 lambda: chain.owned_hotkeys(w.coldkeypub.ss58_address)):
        with pytest.raises(ChainError) as err:
            call()
        assert "state unavailable" in str(err.value) and err.value.exit_code == ExitCode.INFRA


def test_a_backend_that_cannot_connect_raises_chain_error(fake_module, home):
    from runner404.chain.bittensor_adapter import open_chain

    substrate = fake_module.FakeSubstrate()
    substrate.unreachable = True
    with open_chain("finney", substrate=substrate) as chain:
        with pytest.raises(ChainError) as err:
            chain.current_block()
    assert err.value.name == "RpcConnectionError" and err.value.exit_code == ExitCode.INFRA


def test_an_unreachable_endpoint_raises_chain_error_quickly(home, wallet):
    from runner404.chain.bittensor_adapter import open_chain

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ref, _ = wallet
    chain = open_chain(f"ws://127.0.0.1:{port}")
    try:
        started = time.monotonic()
        with pytest.raises(ChainError) as err:
            chain.current_block()
        assert time.monotonic() - started < 5
        assert err.value.name == "RpcConnectionError"
        assert f"127.0.0.1:{port}" in str(err.value) and err.value.exit_code == ExitCode.INFRA
        with pytest.raises(ChainError):
            chain.revealed_commitments(NETUID)
        with pytest.raises(ChainError):
            chain.commit(ref, NETUID, commit_payload(SHA))
    finally:
        chain.close()


def test_missing_wallets_raise_wallet_not_found(chain, fake, home):
    missing = WalletRef("ghost", "hot", str(home / "wallets"))
    with pytest.raises(WalletNotFound) as err:
        chain.hotkey_address(missing)
    assert err.value.path == str(missing.hotkey_file)
    assert str(missing.hotkey_file) in str(err.value)
    with pytest.raises(WalletNotFound) as err:
        chain.coldkey_address(missing)
    assert err.value.path == str(missing.folder / "coldkeypub.txt")
    with pytest.raises(WalletNotFound):
        chain.commit(missing, NETUID, commit_payload(SHA))
    assert fake.submitted == []


def test_wallet_addresses_come_from_the_keyfiles(chain, wallet):
    ref, w = wallet
    assert chain.hotkey_address(ref) == w.hotkey.ss58_address
    assert chain.coldkey_address(ref) == w.coldkeypub.ss58_address


def test_endpoints(home, monkeypatch):
    from runner404.chain import bittensor_adapter

    assert bittensor_adapter.resolve("finney") == ("finney", False)
    assert bittensor_adapter.resolve(" wss://node.example:443 ") == ("wss://node.example:443", True)
    assert bittensor_adapter.resolve("local") == ("ws://127.0.0.1:9944", True)
    monkeypatch.setenv("BT_CHAIN_ENDPOINT", "ws://127.0.0.1:9999")
    assert bittensor_adapter.resolve("local") == ("ws://127.0.0.1:9999", True)
    for bad in ("mainnet", "http://node:9944", ""):
        with pytest.raises(UsageError):
            bittensor_adapter.resolve(bad)
    # client.open_chain reaches the adapter; construction is cold (no connection is opened)
    chain = client_module.open_chain("test")
    try:
        assert type(chain).__name__ == "BittensorChain" and chain.endpoint == "test"
        assert chain._sub.endpoint == "wss://test.finney.opentensor.ai:443"
        assert not chain._connected
    finally:
        chain.close()
    pinned = bittensor_adapter.open_chain("ws://127.0.0.1:9")
    assert pinned._sub._client._substrate.fallback_endpoints == []
    assert pinned._sub._client._substrate.archive_endpoints == []
    pinned.close()


def test_bittensor_is_imported_lazily():
    """Importing the CLI, the chain core or the adapter, and opening a real-network client,
    import neither bittensor nor bittensor_core (nothing connects either)."""
    code = ("import sys, runner404.cli.run, runner404.chain.client, "
            "runner404.chain.bittensor_adapter\n"
            "chain = runner404.chain.client.open_chain('finney')\n"
            "assert type(chain).__name__ == 'BittensorChain'\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('bittensor', "
            "'bittensor_core'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=True).stdout
    assert out.strip() == ""
