"""The rehearsal chain: an offline stand-in for subtensor kept in one JSON file (`sim:PATH`).

It lets a miner rehearse `commit-hash` → `commit-repo-cdn` → `list-all` with no network and no
bittensor. The state (format in `pallet.py`) holds the current block, registered hotkeys per
netuid with their coldkey owners, conviction locks per coldkey, pending commitments with their
reveal blocks, and revealed commitments stored as the chain stores them: SCALE-framed bytes,
written as `0x` hex, at most 10 per hotkey.

Time only moves when something moves it: a commit is included in the next block (the head
advances by 1) and is revealed `blocks_until_reveal` blocks after that; `advance(path, n)` moves
the head n blocks, revealing everything that falls due. Reading never advances the head.

Wallets need not exist: a `WalletRef` resolves to the `ss58Address` of its keyfile when there is
one, else to a deterministic stand-in address (`wallets.py`). Signatures are not checked.

Every operation takes an fcntl lock on `<PATH>.lock` (shared for reads, exclusive for writes),
and writes go to a temporary file in the same folder that then replaces PATH, so concurrent
processes neither lose updates nor see half-written files. POSIX only (fcntl).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner404.chain import wallets
from runner404.chain.client import CommitReceipt, WalletRef
from runner404.chain.pallet import (DEFAULT_MAX_SPACE, DEFAULT_TEMPO, ChainState, new_state,
                                    validate_state)
from runner404.errors import Runner404Error, UsageError


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _missing(path: Path) -> UsageError:
    return UsageError(f"Rehearsal chain {path} does not exist; create it first with the "
                      "rehearsal chain's init command")


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _missing(path) from None
    except OSError as exc:
        raise Runner404Error(f"Cannot read rehearsal chain {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Runner404Error(f"Rehearsal chain {path} is not valid JSON: {exc}") from None
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _state(path: Path, write: bool) -> Iterator[ChainState]:
    """The chain state under the file lock; saved on a clean exit when `write`."""
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    with _locked(path, exclusive=write):
        state = ChainState(_load_checked(path))
        yield state
        if write:
            _save(path, state.data)


def _load_checked(path: Path) -> dict[str, Any]:
    return validate_state(_load(path), where=f"Rehearsal chain {path}")


class RehearsalChain:
    """`ChainClient` over a rehearsal chain file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RehearsalChain({str(self.path)!r})"

    # --- ChainClient -----------------------------------------------------------------------

    def current_block(self) -> int:
        with _state(self.path, write=False) as state:
            return state.block

    def commit(self, wallet: WalletRef, netuid: int, payload_json: str,
               blocks_until_reveal: int = 2) -> CommitReceipt:
        hotkey = wallets.hotkey_address(wallet)
        with _state(self.path, write=True) as state:
            return state.set_commitment(hotkey, netuid, payload_json, blocks_until_reveal)

    def revealed_commitments(self, netuid: int) -> dict[str, list[tuple[int, str]]]:
        with _state(self.path, write=False) as state:
            return state.revealed(netuid)

    def hotkey_address(self, wallet: WalletRef) -> str:
        return wallets.hotkey_address(wallet)

    def coldkey_address(self, wallet: WalletRef) -> str:
        return wallets.coldkey_address(wallet)

    def hotkey_owner(self, hotkey: str) -> str | None:
        with _state(self.path, write=False) as state:
            return state.owner(hotkey)

    def owned_hotkeys(self, coldkey: str) -> list[str]:
        with _state(self.path, write=False) as state:
            return state.owned(coldkey)

    def coldkey_lock(self, coldkey: str, netuid: int) -> float:
        with _state(self.path, write=False) as state:
            return state.lock(coldkey, netuid)

    # --- extras (same as the module functions) ---------------------------------------------

    def advance(self, blocks: int = 1) -> dict[str, Any]:
        return advance(self.path, blocks)

    def show(self) -> dict[str, Any]:
        return show(self.path)


# --- management functions for the CLI ------------------------------------------------------

def _resolve(items: Iterable[str | WalletRef], coldkey: str | None) -> list[tuple[str, str | None]]:
    """(hotkey address, owner) pairs: a WalletRef gives its hotkey and, by default, its coldkey."""
    if isinstance(items, (str, WalletRef)):
        items = [items]
    pairs = []
    for item in items:
        if isinstance(item, WalletRef):
            pairs.append((wallets.hotkey_address(item), coldkey or wallets.coldkey_address(item)))
        else:
            pairs.append((item, coldkey))
    return pairs


def init(path: Path | str, block: int = 1, register: Iterable[str | WalletRef] = (),
         netuid: int = 17, coldkey: str | None = None, *, overwrite: bool = False,
         tempo: int = DEFAULT_TEMPO, max_space: int = DEFAULT_MAX_SPACE) -> dict[str, Any]:
    """Create a rehearsal chain at `block` (netuid created, `register` registered on it).

    An existing file is an error unless `overwrite`. Returns `show(path)`."""
    path = Path(path)
    for value, what in ((block, "block"), (tempo, "tempo"), (max_space, "max_space")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{what} must be a non-negative integer, got {value!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, exclusive=True):
        if path.exists() and not overwrite:
            raise UsageError(f"Rehearsal chain {path} already exists (pass overwrite to replace it)")
        state = ChainState(new_state(block, tempo=tempo, max_space=max_space))
        state.register([], netuid)
        for hotkey, owner in _resolve(register, coldkey):
            state.register([hotkey], netuid, owner)
        _save(path, state.data)
    return show(path)


def register(path: Path | str, ss58s: Iterable[str | WalletRef], netuid: int = 17,
             coldkey: str | None = None) -> list[str]:
    """Register hotkeys (ss58 addresses or WalletRefs) on a netuid; `coldkey` owns them (for a
    WalletRef, its own coldkey by default). Returns the hotkey addresses registered."""
    pairs = _resolve(ss58s, coldkey)
    with _state(Path(path), write=True) as state:
        for hotkey, owner in pairs:
            state.register([hotkey], netuid, owner)
    return [hotkey for hotkey, _ in pairs]


def set_lock(path: Path | str, coldkey: str, alpha: float, netuid: int = 17) -> None:
    """Set a coldkey's conviction-locked alpha on a netuid."""
    with _state(Path(path), write=True) as state:
        state.set_lock(coldkey, alpha, netuid)


def advance(path: Path | str, blocks: int = 1) -> dict[str, Any]:
    """Move the head `blocks` forward; returns {"block", "revealed": [{netuid, hotkey, block}]}."""
    with _state(Path(path), write=True) as state:
        done = state.advance(blocks)
        return {"block": state.block,
                "revealed": [{"netuid": n, "hotkey": hk, "block": b} for n, hk, b in done]}


def show(path: Path | str) -> dict[str, Any]:
    """The whole state as JSON-ready data (see `ChainState.summary`)."""
    with _state(Path(path), write=False) as state:
        return state.summary()
