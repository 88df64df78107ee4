"""The `ChainClient` protocol every chain backend implements, and `open_chain`.

Backends: `RehearsalChain` (`sim:PATH`, offline, `rehearsal.py`), `FakeChain` (in memory, tests,
`fake.py`) and, later, the bittensor adapter (`bittensor_adapter.py`, the only module that
imports bittensor, loaded lazily here). Methods are synchronous; stages call them in a thread.

Error contract:
- Transport and query failures raise `ChainError` (an `InfraError`, exit 3).
- An extrinsic the chain includes but rejects (e.g. `AccountNotAllowedCommit`,
  `SpaceLimitExceeded`) is *returned*: `CommitReceipt(success=False, error_name=...)`, as
  bittensor's `ExtrinsicResult` does. `receipt.raise_for_failure()` turns it into a
  `ChainError` whose `.name` is the pallet error and whose exit code is 1 (the user can act on
  it: register the hotkey, wait for the next epoch), not 3.
- A payload that cannot be encoded at all (over 778 bytes) raises `codec.PayloadError` before
  anything is submitted.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from runner404.errors import ExitCode, InfraError, Runner404Error, UsageError

DEFAULT_WALLET_PATH = "~/.bittensor/wallets"
ADAPTER_MODULE = "runner404.chain.bittensor_adapter"
ADAPTER_ENTRY = "open_chain"  # bittensor_adapter.open_chain(endpoint) -> ChainClient

# Pallet errors a user can fix; they map to exit 1 instead of InfraError's 3.
DISPATCH_ERRORS = frozenset({"AccountNotAllowedCommit", "SpaceLimitExceeded",
                             "TooManyFieldsInCommitmentInfo", "UnexpectedUnreserveLeftover"})


class ChainError(InfraError):
    """A chain failure. `.name` is the chain's error name (`AccountNotAllowedCommit`,
    `SpaceLimitExceeded`, ...) or a transport class (`ConnectionError`, `QueryError`)."""

    def __init__(self, name: str, message: str = ""):
        self.name = name
        self.description = message
        super().__init__(f"{name}: {message}" if message else name)
        if name in DISPATCH_ERRORS:
            self.exit_code = ExitCode.FAILED


class WalletNotFound(Runner404Error):
    """The wallet's keyfile does not exist (exit 1)."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        super().__init__(f"keyfile at '{path}' does not exist")


@dataclass(frozen=True)
class WalletRef:
    """Which wallet signs: `<path>/<name>/hotkeys/<hotkey>` (bittensor's layout)."""

    name: str
    hotkey: str
    path: str = DEFAULT_WALLET_PATH

    @property
    def folder(self) -> Path:
        return Path(self.path).expanduser() / self.name

    @property
    def hotkey_file(self) -> Path:
        return self.folder / "hotkeys" / self.hotkey


@dataclass(frozen=True)
class CommitReceipt:
    """The outcome of one commit.

    `block` is the block that included the extrinsic, `extrinsic_id` `"<block>-<index>"`,
    `reveal_block` the block the reveal is expected in (a prediction on the real chain, where the
    reveal follows the drand round; exact on the rehearsal chain). On failure `error_name` holds
    the chain's error name and `message` its description.
    """

    success: bool
    block: int | None = None
    extrinsic_id: str | None = None
    reveal_block: int | None = None
    message: str = ""
    error_name: str | None = None

    def raise_for_failure(self) -> CommitReceipt:
        if not self.success:
            raise ChainError(self.error_name or "CommitFailed", self.message)
        return self


@runtime_checkable
class ChainClient(Protocol):
    def current_block(self) -> int:
        """The chain's best block number."""
        ...

    def commit(self, wallet: WalletRef, netuid: int, payload_json: str,
               blocks_until_reveal: int = 2) -> CommitReceipt:
        """Submit `payload_json` as a time-locked reveal commitment signed by the hotkey."""
        ...

    def revealed_commitments(self, netuid: int) -> dict[str, list[tuple[int, str]]]:
        """Every revealed commitment on the netuid: hotkey → [(reveal block, decoded text)],
        oldest first, decoded with `codec.decode_revealed`."""
        ...

    def hotkey_address(self, wallet: WalletRef) -> str:
        """The ss58 address of the wallet's hotkey."""
        ...

    def coldkey_address(self, wallet: WalletRef) -> str:
        """The ss58 address of the wallet's coldkey (public part only)."""
        ...

    def hotkey_owner(self, hotkey: str) -> str | None:
        """The coldkey owning a hotkey, None if the hotkey is unknown."""
        ...

    def owned_hotkeys(self, coldkey: str) -> list[str]:
        """Hotkeys owned by a coldkey (empty if none)."""
        ...

    def coldkey_lock(self, coldkey: str, netuid: int) -> float:
        """The coldkey's conviction-locked alpha on the netuid; 0.0 when there is no lock.
        A failed query raises `ChainError`, never returns 0.0."""
        ...


def open_chain(endpoint: str) -> ChainClient:
    """A client for `endpoint`: `sim:PATH` → the rehearsal chain in the JSON file PATH
    (relative to the working directory; the caller resolves manifest-relative paths); anything
    else (`finney`, `test`, `local`, `ws(s)://...`) → the bittensor adapter, imported lazily."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise UsageError("No chain endpoint given (e.g. 'finney', 'test', a ws:// URL or sim:PATH)")
    endpoint = endpoint.strip()
    if endpoint.startswith("sim:"):
        path = endpoint[len("sim:"):]
        if not path:
            raise UsageError("sim: needs the path of a rehearsal chain file, e.g. sim:chain.json")
        from runner404.chain.rehearsal import RehearsalChain

        return RehearsalChain(Path(path).expanduser())
    try:
        adapter = importlib.import_module(ADAPTER_MODULE)
        return getattr(adapter, ADAPTER_ENTRY)(endpoint)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == ADAPTER_MODULE or missing.split(".")[0] in ("bittensor", "bittensor_core"):
            raise Runner404Error(
                f"bittensor support is not installed (cannot import {missing or exc}); "
                f"install bittensor>=11.3,<12 to use the '{endpoint}' network, or use "
                "sim:PATH for an offline rehearsal chain") from None
        raise
