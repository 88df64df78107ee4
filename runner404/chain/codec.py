"""Commitment payloads: build, validate, frame, decode and parse. Pure Python, no bittensor.

Byte-level rules (reference: chain.md §5–§6, protocols.md §6.4):

- Payloads are JSON with Python's default separators, exactly as the classic 404-cli writes
  them: `{"commit": "<sha>"}` and `{"repo": "<owner/name>", "cdn_url": "<url>"}`.
- What gets encrypted is SCALE(str): a compact-length prefix, then the UTF-8 JSON (`frame`).
- The chain keeps at most 1024 ciphertext bytes; the ciphertext is the framed plaintext plus 244
  bytes, so the JSON may be at most 778 UTF-8 bytes (`MAX_PAYLOAD_BYTES`).
- Reads go through the tolerant `decode_revealed` (the same rule as the SN17 validator), and
  `parse_commitments` applies the validator's round filter and "highest block wins" rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runner404.errors import Runner404Error

MAX_ENCRYPTED_BYTES = 1024  # BoundedVec<u8, 1024> of Data::TimelockEncrypted
CIPHERTEXT_OVERHEAD = 244  # timelock ciphertext = framed plaintext + 244 bytes
MAX_PAYLOAD_BYTES = 778  # largest JSON whose framed ciphertext fits in 1024 bytes

REPO_PATTERN = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")
SHA_PATTERN = re.compile(r"[0-9a-fA-F]{40}")


class PayloadError(Runner404Error):
    """A commitment payload or one of its values is invalid (exit 1, as the classic tool)."""


# --- validation ------------------------------------------------------------------------------

def validate_commit_hash(sha: str) -> str:
    """The full 40-character hex commit SHA, unchanged; anything else is a `PayloadError`."""
    if not isinstance(sha, str) or not SHA_PATTERN.fullmatch(sha):
        raise PayloadError(
            f"Invalid commit hash: {sha}. Expected the full 40-character hex commit SHA "
            "(e.g. '3f786850e387550fdab836ed7e6dc881de23001b')")
    return sha


def validate_repo(repo: str) -> str:
    """`owner/name` with letters, digits, '.', '_' and '-' only (the classic rule)."""
    if not isinstance(repo, str) or not REPO_PATTERN.fullmatch(repo):
        raise PayloadError(f"Invalid git repository format: {repo}. Expected format: 'user/repo' "
                           "(e.g. 'mokabetrade/ansible-foundry')")
    return repo


def validate_cdn_url(url: str) -> str:
    """An http(s) URL with a host (the classic rule); whitespace anywhere is rejected too."""
    ok = isinstance(url, str) and not any(ch.isspace() for ch in url)
    if ok:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.netloc) and bool(parts.hostname)
        except ValueError:  # e.g. an invalid IPv6 literal or port
            ok = False
    if not ok:
        raise PayloadError(f"Invalid CDN URL format: {url}. Expected a valid URL with scheme "
                           "(http:// or https://)")
    return url


# --- payloads --------------------------------------------------------------------------------

def payload_json(payload: Mapping[str, Any]) -> str:
    """JSON text with Python's default separators (parity with 404-cli)."""
    return json.dumps(dict(payload))


def check_size(payload: str | bytes) -> int:
    """The payload's UTF-8 size; a `PayloadError` naming the size when it exceeds 778 bytes."""
    size = len(payload.encode("utf-8") if isinstance(payload, str) else payload)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"Commitment payload is {size} bytes of UTF-8 JSON; the chain accepts at most "
            f"{MAX_PAYLOAD_BYTES} bytes (its encrypted form, {size} + "
            f"{len(compact_len(size)) + CIPHERTEXT_OVERHEAD} bytes, must fit in "
            f"{MAX_ENCRYPTED_BYTES})")
    return size


def commit_payload(sha: str) -> str:
    """`{"commit": "<sha>"}` after checking the SHA and the size."""
    text = payload_json({"commit": validate_commit_hash(sha)})
    check_size(text)
    return text


def repo_cdn_payload(repo: str, cdn_url: str) -> str:
    """`{"repo": "<owner/name>", "cdn_url": "<url>"}` after checking both values and the size."""
    text = payload_json({"repo": validate_repo(repo), "cdn_url": validate_cdn_url(cdn_url)})
    check_size(text)
    return text


# --- SCALE framing ---------------------------------------------------------------------------

def compact_len(n: int) -> bytes:
    """SCALE compact encoding of a length: 1, 2 or 4 bytes below 2**30, big-integer mode above."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"compact length must be a non-negative integer, got {n!r}")
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 0b01).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 0b10).to_bytes(4, "little")
    body = n.to_bytes((n.bit_length() + 7) // 8, "little")
    if len(body) > 67:
        raise ValueError(f"compact length too large: {n}")
    return bytes([((len(body) - 4) << 2) | 0b11]) + body


def frame(json_bytes: bytes | str) -> bytes:
    """SCALE(str): the compact length prefix followed by the UTF-8 bytes."""
    raw = json_bytes.encode("utf-8") if isinstance(json_bytes, str) else bytes(json_bytes)
    return compact_len(len(raw)) + raw


def _raw_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        if value[:2] in ("0x", "0X"):
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                pass  # not hex after all: the node's decoded-text form
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return bytes(value)  # list[int]; a value outside 0..255 raises ValueError
    raise TypeError(f"cannot decode a revealed commitment of type {type(value).__name__}")


def decode_revealed(value: str | bytes | bytearray | list[int] | tuple[int, ...] | None) -> str:
    """Tolerant decoding of one revealed commitment, in any form a node or SDK returns it.

    `0x`-hex text is hex-decoded, other text is taken as UTF-8 (the node already decoded valid
    UTF-8), bytes and lists of ints as is. Empty → "". Then the SCALE prefix is skipped by its
    mode (low two bits of the first byte: 0 → 1 byte, 1 → 2, otherwise 4, as the validator does)
    and the rest is decoded as UTF-8, ignoring errors. A `0x` string that is not valid hex is
    treated as text rather than failing.
    """
    raw = _raw_bytes(value)
    if not raw:
        return ""
    mode = raw[0] & 0b11
    skip = 1 if mode == 0 else 2 if mode == 1 else 4
    return raw[skip:].decode("utf-8", errors="ignore")


# --- parsing (protocols.md §6.4) -------------------------------------------------------------

@dataclass(frozen=True)
class RevealWindow:
    """Reveal blocks that belong to a round: first..last inclusive; last None = no upper bound."""

    first: int | None
    last: int | None

    def __contains__(self, block: object) -> bool:
        if not isinstance(block, int) or isinstance(block, bool):
            return False
        return ((self.first is None or block >= self.first)
                and (self.last is None or block <= self.last))


@dataclass(frozen=True)
class CommitmentEntry:
    """One miner's submission for a round, as list-all prints it."""

    hotkey: str
    commit_hash: str
    commit_block: int
    repo: str | None = None
    repo_block: int | None = None
    cdn_url: str | None = None
    cdn_block: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Keys in the classic order: hotkey, commit_hash, commit_block, repo, repo_block,
        cdn_url, cdn_block."""
        return {"hotkey": self.hotkey, "commit_hash": self.commit_hash,
                "commit_block": self.commit_block, "repo": self.repo, "repo_block": self.repo_block,
                "cdn_url": self.cdn_url, "cdn_block": self.cdn_block}


_FIELDS = ("commit", "repo", "cdn_url")


def _as_window(window: RevealWindow | tuple[int | None, int | None] | None) -> RevealWindow:
    if window is None:
        return RevealWindow(None, None)
    if isinstance(window, RevealWindow):
        return window
    first, last = window
    return RevealWindow(first, last)


def parse_commitments(
    revealed: Mapping[str, Iterable[tuple[int, str]]],
    window: RevealWindow | tuple[int | None, int | None] | None,
) -> list[CommitmentEntry]:
    """Entries for one round from decoded reveals `{hotkey: [(reveal_block, text), ...]}`.

    - Only reveals whose block is inside `window` count (None = every block).
    - Each text is parsed as JSON; anything that is not a JSON object is skipped.
    - For each of `commit`, `repo`, `cdn_url`, a non-empty string value with the highest reveal
      block wins; on equal blocks the first one seen stays. Non-string values are ignored.
    - Hotkeys without a `commit` are dropped.
    - Sorted by commit block, then hotkey (the classic tool sorts by commit block only; the
      hotkey makes the order independent of the node's storage order).
    """
    win = _as_window(window)
    entries: list[CommitmentEntry] = []
    for hotkey, reveals in revealed.items():
        best: dict[str, tuple[str, int]] = {}
        for item in reveals:
            block, text = item[0], item[1]
            if block not in win or not isinstance(text, str):
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            for key in _FIELDS:
                value = data.get(key)
                if not value or not isinstance(value, str):
                    continue
                if key not in best or block > best[key][1]:
                    best[key] = (value, block)
        if "commit" not in best:
            continue
        repo = best.get("repo")
        cdn = best.get("cdn_url")
        entries.append(CommitmentEntry(
            hotkey=hotkey, commit_hash=best["commit"][0], commit_block=best["commit"][1],
            repo=repo[0] if repo else None, repo_block=repo[1] if repo else None,
            cdn_url=cdn[0] if cdn else None, cdn_block=cdn[1] if cdn else None))
    entries.sort(key=lambda e: (e.commit_block, e.hotkey))
    return entries
