"""`FakeChain`: an in-memory `ChainClient` for command and stage tests.

It runs the same pallet model as the rehearsal chain (`pallet.ChainState`), so an unregistered
hotkey gets `AccountNotAllowedCommit` and a spent quota `SpaceLimitExceeded` naturally, and adds
knobs for faults the model cannot produce:

- `unreachable = True`: every call raises `ChainError("ConnectionError", ...)`, as an
  unreachable endpoint does;
- `fail("coldkey_lock", name=..., message=...)`: one method raises `ChainError` (e.g. a lock
  query failure); `recover(...)` undoes it;
- `commit_error = "SpaceLimitExceeded"` (or any name): every commit is included and rejected
  with that error;
- `require_wallet_files = True`: a wallet whose hotkey keyfile is missing raises
  `WalletNotFound`, as the real adapter does (by default the stand-in addresses of
  `wallets.py` are used);
- `auto_advance = n`: each `current_block()` moves the head n blocks first (for code that
  polls until a reveal).

`calls` records every method call as (name, arguments); `advance`, `register`, `set_lock`,
`put_revealed` prepare the chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner404.chain import wallets
from runner404.chain.client import ChainError, CommitReceipt, WalletNotFound, WalletRef
from runner404.chain.codec import frame
from runner404.chain.pallet import ChainState, new_state


class FakeChain:
    def __init__(self, block: int = 1, *, netuid: int = 17, registered: Iterable[str] = (),
                 coldkey: str | None = None, tempo: int = 360, max_space: int = 3100):
        self.state = ChainState(new_state(block, tempo=tempo, max_space=max_space))
        self.netuid = netuid
        self.unreachable = False
        self.commit_error: str | None = None
        self.commit_error_message = "rejected by FakeChain"
        self.require_wallet_files = False
        self.auto_advance = 0
        self.failures: dict[str, ChainError] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.addresses: dict[tuple[str, str], tuple[str, str]] = {}
        if registered:
            self.register(list(registered), netuid, coldkey)

    # --- knobs and preparation -------------------------------------------------------------

    def fail(self, method: str, name: str = "QueryError", message: str = "injected failure") -> None:
        self.failures[method] = ChainError(name, message)

    def recover(self, method: str | None = None) -> None:
        if method is None:
            self.failures.clear()
        else:
            self.failures.pop(method, None)

    def add_wallet(self, wallet: WalletRef, hotkey: str | None = None,
                   coldkey: str | None = None) -> tuple[str, str]:
        """Pin a wallet's addresses (default: the stand-in addresses); returns them."""
        pair = (hotkey or wallets.fake_address("hotkey", wallet.name, wallet.hotkey),
                coldkey or wallets.fake_address("coldkey", wallet.name))
        self.addresses[(wallet.name, wallet.hotkey)] = pair
        return pair

    def register(self, hotkeys: list[str] | str, netuid: int | None = None,
                 coldkey: str | None = None) -> None:
        self.state.register([hotkeys] if isinstance(hotkeys, str) else list(hotkeys),
                            self.netuid if netuid is None else netuid, coldkey)

    def set_lock(self, coldkey: str, alpha: float, netuid: int | None = None) -> None:
        self.state.set_lock(coldkey, alpha, self.netuid if netuid is None else netuid)

    def advance(self, blocks: int = 1) -> list[tuple[int, str, int]]:
        return self.state.advance(blocks)

    def put_revealed(self, hotkey: str, value: str | bytes, block: int,
                     netuid: int | None = None, *, framed: bool = True) -> None:
        """Add a revealed commitment directly: `value` text is framed (unless `framed=False`),
        bytes are stored as given."""
        raw = value if isinstance(value, bytes) else (
            frame(value) if framed else value.encode("utf-8"))
        self.state.put_revealed(self.netuid if netuid is None else netuid, hotkey, raw, block)

    @property
    def block(self) -> int:
        return self.state.block

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self.unreachable:
            raise ChainError("ConnectionError", "could not connect to any endpoint: fake://chain")
        if method in self.failures:
            raise self.failures[method]

    def _pair(self, wallet: WalletRef) -> tuple[str, str]:
        pinned = self.addresses.get((wallet.name, wallet.hotkey))
        if pinned is not None:
            return pinned
        if self.require_wallet_files and not wallet.hotkey_file.exists():
            raise WalletNotFound(wallet.hotkey_file)
        return wallets.hotkey_address(wallet), wallets.coldkey_address(wallet)

    # --- ChainClient -----------------------------------------------------------------------

    def current_block(self) -> int:
        self._enter("current_block")
        if self.auto_advance:
            self.state.advance(self.auto_advance)
        return self.state.block

    def commit(self, wallet: WalletRef, netuid: int, payload_json: str,
               blocks_until_reveal: int = 2) -> CommitReceipt:
        self._enter("commit", wallet, netuid, payload_json, blocks_until_reveal)
        hotkey = self._pair(wallet)[0]
        if self.commit_error:
            self.state.advance(1)
            return CommitReceipt(success=False, block=self.block,
                                 extrinsic_id=f"{self.block}-1",
                                 message=self.commit_error_message, error_name=self.commit_error)
        return self.state.set_commitment(hotkey, netuid, payload_json, blocks_until_reveal)

    def revealed_commitments(self, netuid: int) -> dict[str, list[tuple[int, str]]]:
        self._enter("revealed_commitments", netuid)
        return self.state.revealed(netuid)

    def hotkey_address(self, wallet: WalletRef) -> str:
        self._enter("hotkey_address", wallet)
        return self._pair(wallet)[0]

    def coldkey_address(self, wallet: WalletRef) -> str:
        self._enter("coldkey_address", wallet)
        return self._pair(wallet)[1]

    def hotkey_owner(self, hotkey: str) -> str | None:
        self._enter("hotkey_owner", hotkey)
        return self.state.owner(hotkey)

    def owned_hotkeys(self, coldkey: str) -> list[str]:
        self._enter("owned_hotkeys", coldkey)
        return self.state.owned(coldkey)

    def coldkey_lock(self, coldkey: str, netuid: int) -> float:
        self._enter("coldkey_lock", coldkey, netuid)
        return self.state.lock(coldkey, netuid)
