"""The bittensor 11.x adapter: the one module that imports `bittensor` / `bittensor_core`.

Both are imported lazily, inside functions, so importing this module is free and nothing else
in runner404 ever pays for (or depends on) the SDK. `client.open_chain(endpoint)` loads it for
every endpoint that is not `sim:PATH`.

v11 APIs used (reference: chain.md §3, §7; bittensor 11.3.0 sources):

- connection: `bittensor.Subtensor(network, fallback_endpoints=..., archive_endpoints=...,
  substrate=...)` (a `bittensor.SyncClient`, blocking), created on the first call, so opening a
  client imports nothing and never touches the network. A `ws(s)://` URL (and `local`) is pinned
  (no fallback or archive pool); network names keep the SDK's default pools.
  `substrate=` replaces the whole chain backend (any `bittensor.Substrate`, e.g. a test fake).
- `current_block`: `Subtensor.block`.
- `commit`: `bittensor_core.get_encrypted_commitment(json, blocks_until_reveal, 12.0)` (it
  SCALE-frames the string before timelock-encrypting it, as validators expect), then
  `bittensor.calls.Commitments.set_commitment(netuid=..., info={"fields": [[{"TimelockEncrypted":
  {"encrypted": ..., "reveal_round": ...}}]]})` and `Subtensor.submit_call(call, wallet,
  signer="hotkey")` → `bittensor.ExtrinsicResult`.
- `revealed_commitments`: `Subtensor.query_map(bittensor.storage.Commitments.RevealedCommitments,
  [netuid])` (raw storage), each value decoded with `codec.decode_revealed`.
- `hotkey_address` / `coldkey_address`: `bittensor.Wallet(name, hotkey, path)` and
  `bittensor.public_view(wallet, role)` (public key files only, never unlocks a key).
- `hotkey_owner`: read `hotkey_owner` (storage `SubtensorModule.Owner`); `owned_hotkeys`: read
  `owned_hotkeys` (storage `SubtensorModule.OwnedHotkeys`); `coldkey_lock`: read `coldkey_lock`
  (storage `SubtensorModule.Lock` + runtime API `StakeInfoRuntimeApi.get_coldkey_lock` +
  `SubtensorModule.DecayingLock`), all through `Subtensor.read(name, **params)`.

Error mapping (client.py's contract, chain.md §3.3):

- an extrinsic the chain rejects comes back as `ExtrinsicResult(success=False, error=ChainError)`
  and is returned as `CommitReceipt(success=False, error_name=<pallet error name>,
  message=<its description>)`;
- `bittensor.RpcConnectionError` (unreachable node, policy refusal) → `ChainError(
  "RpcConnectionError" | "RpcPolicyError", ...)`; a `bittensor.ChainError` raised by a read →
  `ChainError(<its name> or "QueryError", ...)` (`"SubmitError"` while submitting); socket-level
  failures → `ChainError("ConnectionError", ...)`; a failed result without a named error →
  `error_name="ExtrinsicFailed"`;
- a missing keyfile → `WalletNotFound(<keyfile path>)`; an oversized payload →
  `codec.PayloadError`, before anything is encrypted or submitted.

The adapter never logs or prints. bittensor itself writes `~/.bittensor/btcli_token_symbols.json`
(or `$BTCLI_TOKEN_SYMBOLS_CACHE`) and its runtime-metadata cache on connect; nothing else is
written.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from runner404.chain import codec
from runner404.chain.client import ChainClient, ChainError, CommitReceipt, WalletNotFound, WalletRef
from runner404.errors import Runner404Error, UsageError

T = TypeVar("T")

NETWORKS = ("finney", "test", "local", "archive", "devnet")
LOCAL_DEFAULT = "ws://127.0.0.1:9944"
BLOCK_TIME = 12.0  # seconds; what the classic tool passes to the timelock encryption
RAO_PER_ALPHA = 10**9
# `SubtensorModule.Owner` is a ValueQuery: an unknown hotkey reads as the all-zero account.
ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"


# --- endpoint --------------------------------------------------------------------------------

def resolve(endpoint: str) -> tuple[str, bool]:
    """(what to hand bittensor, whether it is a pinned URL) for a runner404 endpoint string.

    `local` is resolved here from `$BT_CHAIN_ENDPOINT` (else ws://127.0.0.1:9944) at call time,
    since bittensor reads that variable once, at import."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise UsageError("No chain endpoint given (e.g. 'finney', 'test', a ws:// URL or sim:PATH)")
    endpoint = endpoint.strip()
    if endpoint.startswith(("ws://", "wss://")):
        return endpoint, True
    if endpoint == "local":
        return os.environ.get("BT_CHAIN_ENDPOINT") or LOCAL_DEFAULT, True
    if endpoint in NETWORKS:
        return endpoint, False
    raise UsageError(f"Unknown chain endpoint {endpoint!r}: use one of {', '.join(NETWORKS)}, a "
                     "ws:// or wss:// URL, or sim:PATH for an offline rehearsal chain")


def open_chain(endpoint: str, *, substrate: Any = None) -> ChainClient:
    """A `ChainClient` for `endpoint` (a network name or a ws(s):// URL). Nothing connects until
    the first call. `substrate` replaces the chain backend with any object implementing
    `bittensor.Substrate` (tests); the endpoint then only labels the client."""
    return BittensorChain(endpoint, substrate=substrate)


# --- error mapping ---------------------------------------------------------------------------

def _translate(exc: BaseException, what: str, default: str = "QueryError") -> Runner404Error:
    """The runner404 error for an exception raised by the SDK during `what`; `default` names
    failures that carry no name of their own."""
    if isinstance(exc, Runner404Error):
        return exc
    import bittensor as bt

    if isinstance(exc, bt.RpcConnectionError):  # includes RpcPolicyError
        return ChainError(type(exc).__name__, f"{what}: {exc}")
    if isinstance(exc, bt.ChainError):
        return ChainError(exc.name or default, f"{what}: {exc.message}")
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return ChainError("ConnectionError", f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, bt.BittensorError):
        return ChainError(type(exc).__name__, f"{what}: {exc}")
    return ChainError(default, f"{what}: {type(exc).__name__}: {exc}")


# --- the client ------------------------------------------------------------------------------

class BittensorChain:
    """`ChainClient` over a bittensor 11 `Subtensor` (blocking; safe to call from threads)."""

    def __init__(self, endpoint: str, *, substrate: Any = None):
        self._target, self._pinned = resolve(endpoint)  # a bad endpoint fails here, offline
        self.endpoint = endpoint.strip()
        self._substrate = substrate
        self._subtensor: Any = None  # built on first use: opening a client imports nothing
        self._lock = threading.Lock()
        self._connected = False

    def __repr__(self) -> str:
        return f"BittensorChain({self.endpoint!r})"

    # --- plumbing --------------------------------------------------------------------------

    @property
    def _sub(self) -> Any:
        """The `bt.Subtensor` (cold until its first call), created on first use."""
        if self._subtensor is None:
            with self._lock:
                if self._subtensor is None:
                    import bittensor as bt

                    options: dict[str, Any] = {}
                    if self._substrate is not None:
                        options["substrate"] = self._substrate
                    elif self._pinned:  # one node, no fallback or archive pool
                        options.update(fallback_endpoints=[], archive_endpoints=[])
                    try:
                        self._subtensor = bt.Subtensor(self._target, **options)
                    except ValueError as exc:  # an endpoint bittensor does not know
                        raise UsageError(f"Unknown chain endpoint {self.endpoint!r}: "
                                         f"{exc}") from None
        return self._subtensor

    def _connect(self) -> None:
        if self._connected:
            return
        sub = self._sub
        with self._lock:  # one handshake even when stages call from several threads
            if not self._connected:
                try:
                    sub.connect()
                except Exception as exc:
                    raise _translate(exc, f"cannot connect to {sub.endpoint}") from None
                self._connected = True

    def _run(self, what: str, fn: Callable[[], T], default: str = "QueryError") -> T:
        self._connect()
        try:
            return fn()
        except Exception as exc:
            raise _translate(exc, what, default) from None

    def close(self) -> None:
        """Close the connection and stop bittensor's loop thread (also happens at exit)."""
        if self._subtensor is not None:
            try:
                self._subtensor.close()
            except Exception:
                pass
        self._connected = False

    def __enter__(self) -> BittensorChain:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- wallets ---------------------------------------------------------------------------

    @staticmethod
    def _wallet(ref: WalletRef) -> Any:
        import bittensor as bt

        return bt.Wallet(ref.name, ref.hotkey, str(Path(ref.path).expanduser()))

    @staticmethod
    def _key(load: Callable[[], Any], missing: Path) -> Any:
        try:
            return load()
        except FileNotFoundError:
            raise WalletNotFound(missing) from None
        except Exception as exc:  # unreadable, damaged, or a password that did not unlock it
            raise UsageError(f"Cannot read keyfile {missing}: {exc}") from None

    def hotkey_address(self, wallet: WalletRef) -> str:
        import bittensor as bt

        w = self._wallet(wallet)
        return self._key(lambda: bt.public_view(w, "hotkey"), wallet.hotkey_file).ss58_address

    def coldkey_address(self, wallet: WalletRef) -> str:
        w = self._wallet(wallet)
        return self._key(lambda: w.coldkeypub, wallet.folder / "coldkeypub.txt").ss58_address

    # --- ChainClient -----------------------------------------------------------------------

    def current_block(self) -> int:
        return int(self._run("reading the current block", lambda: self._sub.block))

    def commit(self, wallet: WalletRef, netuid: int, payload_json: str,
               blocks_until_reveal: int = 2) -> CommitReceipt:
        if (not isinstance(blocks_until_reveal, int) or isinstance(blocks_until_reveal, bool)
                or blocks_until_reveal < 1):
            raise UsageError(f"blocks_until_reveal must be an integer ≥ 1, got "
                             f"{blocks_until_reveal!r}")
        codec.check_size(payload_json)  # PayloadError before anything is encrypted or sent
        import bittensor as bt
        import bittensor_core

        w = self._wallet(wallet)
        hotkey = self._key(lambda: w.hotkey, wallet.hotkey_file)  # the signing key must exist
        try:
            encrypted, reveal_round = bittensor_core.get_encrypted_commitment(
                payload_json, blocks_until_reveal, BLOCK_TIME)
        except Exception as exc:
            raise ChainError("TimelockError", f"cannot encrypt the commitment: {exc}") from None
        call = bt.calls.Commitments.set_commitment(
            netuid=netuid,
            info={"fields": [[{"TimelockEncrypted": {"encrypted": encrypted,
                                                      "reveal_round": reveal_round}}]]})
        result = self._run(f"submitting the commitment for {hotkey.ss58_address}",
                           lambda: self._sub.submit_call(call, w, signer="hotkey"),
                           default="SubmitError")
        extrinsic_id = result.extrinsic_id
        block = None
        if extrinsic_id:
            head = str(extrinsic_id).split("-", 1)[0]
            block = int(head) if head.isdigit() else None
        if not result.success:
            error = result.error
            name = (error.name if error is not None else None) or "ExtrinsicFailed"
            message = ((error.description or error.message) if error is not None else "") \
                or result.message or "the extrinsic failed"
            return CommitReceipt(success=False, block=block, extrinsic_id=extrinsic_id,
                                 message=message, error_name=name)
        reveal_block = block + blocks_until_reveal if block is not None else None
        reveal_in = math.ceil(blocks_until_reveal * BLOCK_TIME)
        where = f"included in block {block}" if block is not None else "submitted"
        message = (f"{where}; reveal round {reveal_round} (drand quicknet, ~{reveal_in} s after "
                   "submission)")
        if reveal_block is not None:
            message += f", expected around block {reveal_block}"
        return CommitReceipt(success=True, block=block, extrinsic_id=extrinsic_id,
                             reveal_block=reveal_block, message=message)

    def revealed_commitments(self, netuid: int) -> dict[str, list[tuple[int, str]]]:
        import bittensor as bt

        rows = self._run(
            f"reading revealed commitments on netuid {netuid}",
            lambda: self._sub.query_map(bt.storage.Commitments.RevealedCommitments, [netuid]))
        out: dict[str, list[tuple[int, str]]] = {}
        try:
            for key, history in rows or []:
                hotkey = str(key[-1] if isinstance(key, (tuple, list)) else key)
                entries = [(int(block), codec.decode_revealed(data)) for data, block in history or []]
                if entries:
                    # storage order is oldest first; the stable sort only guards against a node
                    # or SDK handing the history over in another order
                    out.setdefault(hotkey, []).extend(entries)
                    out[hotkey].sort(key=lambda item: item[0])
        except (TypeError, ValueError) as exc:
            raise ChainError("QueryError", f"unexpected RevealedCommitments value on netuid "
                                           f"{netuid}: {type(exc).__name__}: {exc}") from None
        return out

    def hotkey_owner(self, hotkey: str) -> str | None:
        owner = self._run(f"reading the owner of hotkey {hotkey}",
                          lambda: self._sub.read("hotkey_owner", hotkey_ss58=hotkey))
        if not owner or str(owner) == ZERO_ACCOUNT:
            return None
        return str(owner)

    def owned_hotkeys(self, coldkey: str) -> list[str]:
        hotkeys = self._run(f"reading the hotkeys of coldkey {coldkey}",
                            lambda: self._sub.read("owned_hotkeys", coldkey_ss58=coldkey))
        return [str(hotkey) for hotkey in hotkeys or []]

    def coldkey_lock(self, coldkey: str, netuid: int) -> float:
        record = self._run(f"reading the conviction lock of coldkey {coldkey} on netuid {netuid}",
                           lambda: self._sub.read("coldkey_lock", coldkey_ss58=coldkey,
                                                  netuid=netuid))
        if not record:
            return 0.0
        locked = record.get("locked_alpha") if isinstance(record, dict) else None
        if locked is None:
            return 0.0
        rao = getattr(locked, "rao", None)
        if rao is not None:
            return int(rao) / RAO_PER_ALPHA
        try:
            return float(locked)
        except (TypeError, ValueError):
            raise ChainError("QueryError", f"unexpected lock value for coldkey {coldkey}: "
                                           f"{locked!r}") from None
