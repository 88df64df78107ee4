"""Wallet addresses without bittensor, for the rehearsal chain and the fake.

A bittensor wallet is a folder `<path>/<name>/` holding JSON keyfiles (chain.md §7):
`hotkeys/<hotkey>` (usually plaintext, with `ss58Address`), `hotkeys/<hotkey>pub.txt`, and
`coldkeypub.txt`. When those files exist their `ss58Address` is used, so a rehearsal can run with
the same wallets as the real chain. When they do not, a deterministic stand-in address is derived:

    public key = sha256("runner404-rehearsal/<kind>/<name>[/<hotkey>]")   kind = hotkey | coldkey
    address    = SS58 (generic prefix 42) of that public key

These are well-formed SS58 addresses (48 characters, starting with '5', valid checksum) that no
real key controls; the wallet folder is not part of the seed, so `cold/hot` gives the same
address whatever `path` says. Signing is never needed: the rehearsal chain does not verify
signatures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from runner404.errors import UsageError

if TYPE_CHECKING:
    from runner404.chain.client import WalletRef

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SS58_PREFIX = 42


def _b58encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58[rem] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def ss58_encode(public_key: bytes, prefix: int = SS58_PREFIX) -> str:
    """SS58 address of a 32-byte public key (simple one-byte prefixes, < 64)."""
    if len(public_key) != 32 or not 0 <= prefix < 64:
        raise ValueError("ss58_encode needs a 32-byte key and a prefix below 64")
    body = bytes([prefix]) + public_key
    checksum = hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    return _b58encode(body + checksum)


def fake_address(kind: str, name: str, hotkey: str | None = None) -> str:
    """The deterministic rehearsal address of a wallet's hotkey or coldkey (module docstring)."""
    seed = f"runner404-rehearsal/{kind}/{name}" + (f"/{hotkey}" if hotkey is not None else "")
    return ss58_encode(hashlib.sha256(seed.encode("utf-8")).digest())


def wallet_dir(wallet: WalletRef) -> Path:
    return Path(wallet.path).expanduser() / wallet.name


def _address_in(path: Path) -> str | None:
    """The `ss58Address` of a JSON keyfile (or a bare address in a *pub.txt); None if the file is
    missing; a `UsageError` if it exists but holds no readable address (e.g. encrypted)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read keyfile {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("ss58Address"), str):
        return data["ss58Address"]
    if text.startswith("5") and text.isalnum() and 46 <= len(text) <= 48:
        return text
    raise UsageError(f"Keyfile {path} holds no readable ss58Address (is it encrypted?)")


def hotkey_address(wallet: WalletRef) -> str:
    """The hotkey address from `<path>/<name>/hotkeys/<hotkey>` (or its `pub.txt`), else the
    deterministic stand-in."""
    folder = wallet_dir(wallet) / "hotkeys"
    keyfile, pubfile = folder / wallet.hotkey, folder / f"{wallet.hotkey}pub.txt"
    try:
        found = _address_in(keyfile)
    except UsageError as exc:  # an encrypted or damaged keyfile: its public file may do
        error = exc
        found = None
    else:
        error = None
    if found is None:
        found = _address_in(pubfile)
    if found is None and error is not None:
        raise error
    return found or fake_address("hotkey", wallet.name, wallet.hotkey)


def coldkey_address(wallet: WalletRef) -> str:
    """The coldkey address from `<path>/<name>/coldkeypub.txt`, else the stand-in."""
    found = _address_in(wallet_dir(wallet) / "coldkeypub.txt")
    return found or fake_address("coldkey", wallet.name)


def write_keyfiles(wallet: WalletRef, hotkey_ss58: str | None = None,
                   coldkey_ss58: str | None = None) -> tuple[str, str]:
    """Write public-only keyfiles for a wallet (tests and rehearsals); returns the addresses.

    Files: `hotkeys/<hotkey>` and `hotkeys/<hotkey>pub.txt` and `coldkeypub.txt`, each a JSON
    object with `ss58Address` only (no secrets), mode 0600.
    """
    hot = hotkey_ss58 or fake_address("hotkey", wallet.name, wallet.hotkey)
    cold = coldkey_ss58 or fake_address("coldkey", wallet.name)
    base = wallet_dir(wallet)
    (base / "hotkeys").mkdir(parents=True, exist_ok=True)
    for path, address in ((base / "hotkeys" / wallet.hotkey, hot),
                          (base / "hotkeys" / f"{wallet.hotkey}pub.txt", hot),
                          (base / "coldkeypub.txt", cold)):
        path.write_text(json.dumps({"ss58Address": address}), encoding="utf-8")
        path.chmod(0o600)
    return hot, cold
