"""A dict-backed model of the chain state the commit commands touch, shared by `FakeChain`
(in memory) and the rehearsal chain (a JSON file).

It follows the Commitments pallet (`RaoFoundation/subtensor pallets/commitments/src/lib.rs`):

- `set_commitment` needs the subnet to exist and the signing hotkey to be registered on it,
  else `AccountNotAllowedCommit`.
- Each call consumes `max(100, ciphertext bytes)` of a per-hotkey, per-netuid, per-epoch quota
  of `max_space` (3100) bytes, else `SpaceLimitExceeded`. The ciphertext size is modelled as
  framed plaintext + 244 bytes. The epoch index is approximated as
  `(block + netuid + 1) // (tempo + 1)` with tempo 360 (the quota is enforced loosely: the real
  tempo and epoch boundaries of a subnet may differ).
- A new commitment *replaces* the hotkey's pending one (`CommitmentOf` holds one registration
  per hotkey and netuid), so committing twice before the first reveal loses the first.
- There is no encryption: the pending value is the framed plaintext, revealed when the block
  reaches `reveal_block` (= inclusion block + blocks_until_reveal). On the real chain the
  reveal follows the drand round and usually comes a block or two later.
- Revealed values are kept as the chain keeps them, SCALE-framed bytes (stored as `0x` hex), at
  most the 10 most recent per hotkey, oldest first.
- Reads return what a node returns: the bytes as text when they are valid UTF-8, else `0x` hex;
  `revealed` then decodes them with `codec.decode_revealed`, exercising both forms.

Owners (hotkey → coldkey) are global like subtensor's `Owner` map; conviction locks are per
coldkey and netuid.
"""

from __future__ import annotations

import copy
from typing import Any

from runner404.chain.client import CommitReceipt
from runner404.chain.codec import CIPHERTEXT_OVERHEAD, check_size, decode_revealed, frame
from runner404.errors import Runner404Error, UsageError

FORMAT = "runner404-rehearsal-chain"
VERSION = 1
MAX_REVEALS = 10
DEFAULT_MAX_SPACE = 3100
DEFAULT_TEMPO = 360
MIN_USED_SPACE = 100

NOT_ALLOWED = "AccountNotAllowedCommit"
SPACE_LIMIT = "SpaceLimitExceeded"


def new_state(block: int = 1, *, tempo: int = DEFAULT_TEMPO,
              max_space: int = DEFAULT_MAX_SPACE) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "block": block, "tempo": tempo,
            "max_space": max_space, "owners": {}, "locks": {}, "subnets": {}}


def node_form(raw: bytes) -> str:
    """How a node returns stored bytes: text when valid UTF-8, else `0x` hex."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()
    return text if not text.startswith(("0x", "0X")) else "0x" + raw.hex()


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{what} must be an integer ≥ {minimum}, got {value!r}")
    return value


def validate_state(data: Any, where: str = "chain state") -> dict[str, Any]:
    """Check the shape of a loaded state; a `Runner404Error` naming the problem otherwise."""
    def bad(why: str) -> Runner404Error:
        return Runner404Error(f"{where} is not a runner404 rehearsal chain: {why}")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"'format' must be {FORMAT!r}")
    if data.get("version") != VERSION:
        raise bad(f"unsupported version {data.get('version')!r} (expected {VERSION})")
    for key in ("block", "tempo", "max_space"):
        if not isinstance(data.get(key), int) or isinstance(data.get(key), bool) or data[key] < 0:
            raise bad(f"'{key}' must be a non-negative integer")
    for key in ("owners", "locks", "subnets"):
        if not isinstance(data.get(key), dict):
            raise bad(f"'{key}' must be an object")
    for netuid, subnet in data["subnets"].items():
        if not netuid.isdigit() or not isinstance(subnet, dict):
            raise bad(f"subnet {netuid!r} is malformed")
        for key, kind in (("hotkeys", list), ("pending", dict), ("revealed", dict),
                          ("used_space", dict)):
            if not isinstance(subnet.setdefault(key, kind()), kind):
                raise bad(f"subnets.{netuid}.{key} is malformed")
    return data


class ChainState:
    """Operations on one state dict (mutated in place; callers persist it)."""

    def __init__(self, data: dict[str, Any] | None = None):
        self.data = validate_state(data) if data is not None else new_state()

    # --- plumbing --------------------------------------------------------------------------

    @property
    def block(self) -> int:
        return self.data["block"]

    def _subnet(self, netuid: int, create: bool = False) -> dict[str, Any] | None:
        key = str(_int(netuid, "netuid"))
        subnets = self.data["subnets"]
        if key not in subnets and create:
            subnets[key] = {"hotkeys": [], "pending": {}, "revealed": {}, "used_space": {}}
        return subnets.get(key)

    def epoch(self, block: int, netuid: int) -> int:
        return (block + netuid + 1) // (self.data["tempo"] + 1)

    # --- management ------------------------------------------------------------------------

    def register(self, hotkeys: list[str], netuid: int = 17, coldkey: str | None = None) -> None:
        """Register hotkeys on a netuid (creating the subnet); `coldkey` becomes their owner."""
        subnet = self._subnet(netuid, create=True)
        assert subnet is not None
        for hotkey in hotkeys:
            if not isinstance(hotkey, str) or not hotkey:
                raise UsageError(f"not a hotkey address: {hotkey!r}")
            if hotkey not in subnet["hotkeys"]:
                subnet["hotkeys"].append(hotkey)
            if coldkey is not None:
                self.data["owners"][hotkey] = coldkey

    def set_lock(self, coldkey: str, alpha: float, netuid: int = 17) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise UsageError(f"lock must be a non-negative number, got {alpha!r}")
        self.data["locks"].setdefault(coldkey, {})[str(_int(netuid, "netuid"))] = float(alpha)

    def advance(self, blocks: int = 1) -> list[tuple[int, str, int]]:
        """Move the head forward; returns the reveals made, as (netuid, hotkey, block)."""
        return self._advance_to(self.block + _int(blocks, "blocks"))

    def _advance_to(self, target: int) -> list[tuple[int, str, int]]:
        done: list[tuple[int, str, int]] = []
        due: list[tuple[int, str, str, dict[str, Any]]] = []
        for netuid, subnet in self.data["subnets"].items():
            for hotkey, pending in subnet["pending"].items():
                if pending["reveal_block"] <= target:
                    due.append((pending["reveal_block"], netuid, hotkey, pending))
        for reveal_block, netuid, hotkey, pending in sorted(due, key=lambda d: d[0]):
            subnet = self.data["subnets"][netuid]
            history = subnet["revealed"].setdefault(hotkey, [])
            history.append([pending["data"], reveal_block])
            del history[:-MAX_REVEALS]
            del subnet["pending"][hotkey]
            done.append((int(netuid), hotkey, reveal_block))
        self.data["block"] = max(self.block, target)
        return done

    def put_revealed(self, netuid: int, hotkey: str, raw: bytes, block: int) -> None:
        """Store an already revealed value as is (e.g. unframed or garbage bytes, for tests)."""
        subnet = self._subnet(netuid, create=True)
        assert subnet is not None
        history = subnet["revealed"].setdefault(hotkey, [])
        history.append(["0x" + bytes(raw).hex(), _int(block, "block")])
        del history[:-MAX_REVEALS]

    # --- the extrinsic ---------------------------------------------------------------------

    def set_commitment(self, hotkey: str, netuid: int, payload_json: str,
                       blocks_until_reveal: int = 2) -> CommitReceipt:
        """Include a reveal commitment in the next block (see the module docstring)."""
        _int(blocks_until_reveal, "blocks_until_reveal", minimum=1)
        size = check_size(payload_json)  # PayloadError: nothing is submitted
        framed = frame(payload_json)
        included = self.block + 1
        self._advance_to(included)  # on_initialize reveals run before the block's extrinsics
        extrinsic_id = f"{included}-1"

        def failed(name: str, why: str) -> CommitReceipt:
            return CommitReceipt(success=False, block=included, extrinsic_id=extrinsic_id,
                                 message=why, error_name=name)

        subnet = self._subnet(netuid)
        if subnet is None or hotkey not in subnet["hotkeys"]:
            where = f"netuid {netuid} does not exist" if subnet is None else \
                f"hotkey {hotkey} is not registered on netuid {netuid}"
            return failed(NOT_ALLOWED, f"Account is not allowed to make commitments ({where})")

        required = max(MIN_USED_SPACE, len(framed) + CIPHERTEXT_OVERHEAD)
        epoch = self.epoch(included, netuid)
        usage = subnet["used_space"].get(hotkey) or {"last_epoch": epoch, "used_space": 0}
        if usage["last_epoch"] != epoch:
            usage = {"last_epoch": epoch, "used_space": 0}
        limit = self.data["max_space"]
        if usage["used_space"] + required > limit:
            return failed(SPACE_LIMIT, f"Space limit exceeded for the current epoch: "
                                       f"{usage['used_space']} of {limit} bytes used, this "
                                       f"commitment needs {required} ({size}-byte payload)")
        usage["used_space"] += required
        subnet["used_space"][hotkey] = usage

        message = f"included in block {included}; reveals at block " \
                  f"{included + blocks_until_reveal}"
        replaced = subnet["pending"].get(hotkey)
        if replaced is not None:
            message += (f"; replaces the commitment from block {replaced['block']}, which had "
                        "not been revealed yet and never will be")
        subnet["pending"][hotkey] = {"data": "0x" + framed.hex(), "block": included,
                                     "reveal_block": included + blocks_until_reveal}
        return CommitReceipt(success=True, block=included, extrinsic_id=extrinsic_id,
                             reveal_block=included + blocks_until_reveal, message=message)

    # --- reads -----------------------------------------------------------------------------

    def revealed_raw(self, netuid: int) -> dict[str, list[tuple[str, int]]]:
        """`RevealedCommitments` as a node returns it: hotkey → [(value, reveal block)], the
        value as text when the stored bytes are valid UTF-8, else `0x` hex."""
        subnet = self._subnet(netuid)
        if subnet is None:
            return {}
        return {hotkey: [(node_form(bytes.fromhex(data[2:])), block) for data, block in history]
                for hotkey, history in subnet["revealed"].items() if history}

    def revealed(self, netuid: int) -> dict[str, list[tuple[int, str]]]:
        """Decoded reveals: hotkey → [(reveal block, text)], oldest first."""
        return {hotkey: [(block, decode_revealed(value)) for value, block in history]
                for hotkey, history in self.revealed_raw(netuid).items()}

    def pending(self, netuid: int) -> dict[str, dict[str, Any]]:
        subnet = self._subnet(netuid)
        return copy.deepcopy(subnet["pending"]) if subnet else {}

    def is_registered(self, hotkey: str, netuid: int) -> bool:
        subnet = self._subnet(netuid)
        return subnet is not None and hotkey in subnet["hotkeys"]

    def owner(self, hotkey: str) -> str | None:
        return self.data["owners"].get(hotkey)

    def owned(self, coldkey: str) -> list[str]:
        return [hk for hk, ck in self.data["owners"].items() if ck == coldkey]

    def lock(self, coldkey: str, netuid: int) -> float:
        return float(self.data["locks"].get(coldkey, {}).get(str(netuid), 0.0))

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view: block, subnets (hotkeys with owners, pending with decoded text,
        revealed with decoded text and the stored hex), locks."""
        subnets: dict[str, Any] = {}
        for key, subnet in sorted(self.data["subnets"].items(), key=lambda kv: int(kv[0])):
            subnets[key] = {
                "hotkeys": [{"hotkey": hk, "coldkey": self.owner(hk)} for hk in subnet["hotkeys"]],
                "pending": [{"hotkey": hk, "block": p["block"], "reveal_block": p["reveal_block"],
                             "text": decode_revealed(p["data"])}
                            for hk, p in subnet["pending"].items()],
                "revealed": [{"hotkey": hk, "block": block, "text": decode_revealed(data),
                              "stored": data}
                             for hk, history in subnet["revealed"].items()
                             for data, block in history],
            }
        return {"block": self.block, "tempo": self.data["tempo"],
                "max_space": self.data["max_space"], "subnets": subnets,
                "locks": copy.deepcopy(self.data["locks"])}
