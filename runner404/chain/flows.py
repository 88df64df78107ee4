"""The commit and list-all flows (classic-cli §3.1–3.3, with defects D1–D9 fixed), shared by the
`commit` / `commitments` stages and the classic `404-cli` commands.

Everything the user should see besides the result goes to `note(level, text)`; the result is a
plain dict (the classic JSON fields plus the inclusion block and extrinsic id, D1).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from runner404.chain import codec
from runner404.chain.client import ChainClient, WalletRef
from runner404.chain.competition import Competition, commitment_window, resolve_round, round_to_commit
from runner404.collector import CONCURRENCY, Limits, check_stems, js_url
from runner404.errors import Runner404Error

Note = Callable[[str, str], None]  # note(level, text): level is "info" or "warning"
CDN_TIMEOUT = 10.0
BLOCK_TIME = 12.0


class CommitRefused(Runner404Error):
    pass


@dataclass(frozen=True)
class ChainSettings:
    network: str  # resolved: sim:/abs/path, finney, ws://...
    netuid: int
    competition: str  # base URL or folder
    required_lock: float = 100.0


def _state_and_schedule(competition: Competition) -> tuple[int, Any]:
    try:
        state = competition.state()
    except Runner404Error as exc:
        raise Runner404Error(f"Failed to fetch state: {exc}") from None
    try:
        schedule = competition.schedule(state.current_round)
    except Runner404Error as exc:
        raise Runner404Error(f"Failed to fetch schedule: {exc}") from None
    return state.current_round, schedule


def _current_block(chain: ChainClient) -> int:
    try:
        return chain.current_block()
    except Runner404Error as exc:
        raise Runner404Error(f"Failed to fetch current block: {exc}") from None


def check_cdn(url: str, client: httpx.Client | None = None) -> None:
    """`HEAD <cdn_url>` (redirects followed, 10 s): a status below 400 passes (D7)."""
    try:
        owned = client is None
        client = client or httpx.Client(timeout=CDN_TIMEOUT, follow_redirects=True)
        try:
            status = client.head(url).status_code
        finally:
            if owned:
                client.close()
    except httpx.HTTPError as exc:
        raise CommitRefused(f"CDN URL {url} is not accessible: {type(exc).__name__}") from None
    if status >= 400:
        hint = " (a bucket root may refuse HEAD; check that <cdn_url>/<stem>.js downloads)" if status in (
            401, 403) else ""
        raise CommitRefused(f"CDN URL {url} is not accessible: {status}{hint}")


@dataclass(frozen=True)
class Preflight:
    """Options of the CDN preflight of a repo/cdn_url commit (`commit(..., preflight=Preflight())`).

    `round`: whose stems to check; None = the round the commit counts for, or a number,
    `current` or `next`. `stems`: check these instead of a round's. `limits`: the collector's
    download rule (1 MiB, 2 tries 3 s apart, 300 s timeouts)."""

    round: int | str | None = None
    stems: tuple[str, ...] | None = None
    limits: Limits = field(default_factory=Limits)
    concurrency: int = CONCURRENCY


@dataclass
class PreflightReport:
    cdn_url: str
    round: int | None
    found: list[str]
    missing: dict[str, str]  # stem -> why the validators' download would fail

    @property
    def total(self) -> int:
        return len(self.found) + len(self.missing)

    @property
    def ok(self) -> bool:
        return not self.missing

    def summary(self, shown: int = 5) -> str:
        where = f" for round {self.round}" if self.round is not None else ""
        text = (f"CDN preflight: the validators would find {len(self.found)}/{self.total} stems at "
                f"{self.cdn_url}{where}")
        if self.missing:
            listed = "; ".join(f"{js_url(self.cdn_url, stem).rsplit('/', 1)[-1]}: {reason}"
                               for stem, reason in list(self.missing.items())[:shown])
            more = f"; and {len(self.missing) - shown} more" if len(self.missing) > shown else ""
            text += f"; {len(self.missing)} missing: {listed}{more}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"cdn_url": self.cdn_url, "round": self.round, "stems": self.total, "found": len(self.found),
                "missing": dict(self.missing)}


def cdn_preflight(competition: Competition, cdn_url: str, round_number: int | str | None = "current", *,
                  stems: Sequence[str] | None = None, limits: Limits | None = None,
                  concurrency: int = CONCURRENCY) -> PreflightReport:
    """Download `{cdn_url}/{stem}.js` for every stem of a round (or the given `stems`) the way the
    validators' collector does (runner404.collector) and report what it finds. Never raises for a
    missing stem; raises `Runner404Error` when the round's prompts cannot be read.

    Synchronous (runs its own event loop): call it from a thread without a running loop."""
    from runner404.prompts import PromptError, build_prompts

    if stems is None:
        try:
            if not isinstance(round_number, int):
                round_number = resolve_round(round_number or "current", competition.state().current_round)
            urls = competition.prompts(round_number)
        except Runner404Error as exc:
            raise Runner404Error(f"CDN preflight: cannot read the prompts of round {round_number}: {exc}") from None
        try:
            labels = [f"prompts.txt entry {i + 1}" for i in range(len(urls))]
            stems = [p.stem for p in build_prompts(urls, labels=labels)]
        except PromptError as exc:
            raise Runner404Error(f"CDN preflight: round {round_number}'s prompts: {exc}") from None
    else:
        round_number = round_number if isinstance(round_number, int) else None
    result = asyncio.run(check_stems(cdn_url, list(stems), limits or Limits(), concurrency=concurrency))
    return PreflightReport(cdn_url, round_number, result.found, result.missing)


def _preflight(competition: Competition, cdn_url: str, target: int, preflight: Preflight, force: bool,
               note: Note) -> PreflightReport | None:
    """Run the preflight before a repo commit; refuse unless forced when it finds missing stems."""
    try:
        report = cdn_preflight(competition, cdn_url, target if preflight.round is None else preflight.round,
                               stems=preflight.stems, limits=preflight.limits, concurrency=preflight.concurrency)
    except Runner404Error as exc:
        if not force:
            raise CommitRefused(f"{exc}. Check the round, or commit without the preflight check "
                                "(force: true / --force).") from None
        note("warning", str(exc))
        return None
    if report.ok:
        note("info", report.summary())
        return report
    if not force:
        raise CommitRefused(f"{report.summary()}. Upload the missing files, or commit anyway with force: true / "
                            "--force.")
    note("warning", report.summary())
    return report


def lock_warning(chain: ChainClient, wallet: WalletRef, hotkey: str, entries: list[codec.CommitmentEntry],
                 settings: ChainSettings) -> str | None:
    """The conviction-lock warning of classic-cli §3.11, or None when the lock suffices."""
    coldkey = chain.coldkey_address(wallet)
    owned = set(chain.owned_hotkeys(coldkey))
    submitting = ({e.hotkey for e in entries} & owned) | {hotkey}
    required = len(submitting) * settings.required_lock
    locked = chain.coldkey_lock(coldkey, settings.netuid)
    if locked >= required:
        return None
    return (f"Your coldkey has only {locked:.4f} ρ locked on netuid {settings.netuid}, but {required:.0f} is "
            f"required ({settings.required_lock:.0f} ρ per submitting hotkey x {len(submitting)}). Lock at least "
            f"{required:.0f} ρ (conviction) with your coldkey or your submissions may not be scored.")


def _wait_for_hash(chain: ChainClient, settings: ChainSettings, hotkey: str, window, timeout: float,
                   note: Note) -> list[codec.CommitmentEntry]:
    """Poll until this hotkey's hash is revealed in the window (the repo commit needs it), for at
    most `timeout` s. A rehearsal chain has no clock: waiting there means advancing it a block."""
    note("info", "waiting for your hash commitment to be revealed")
    advance = getattr(chain, "advance", None)
    entries: list[codec.CommitmentEntry] = []
    for _ in range(max(1, math.ceil(timeout / BLOCK_TIME))):  # one block at a time
        if advance is not None:
            advance(1)
        else:
            time.sleep(BLOCK_TIME)
        entries = codec.parse_commitments(chain.revealed_commitments(settings.netuid), window)
        if any(e.hotkey == hotkey and e.commit_hash for e in entries):
            break
    return entries


def commit(chain: ChainClient, competition: Competition, settings: ChainSettings, wallet: WalletRef, *,
           commit_hash: str | None = None, repo: str | None = None, cdn_url: str | None = None,
           check_cdn_url: bool = True, force: bool = False, reveal_wait: float = 0.0,
           note: Note = lambda level, text: None, preflight: Preflight | None = None) -> dict[str, Any]:
    """Commit `{"commit": sha}` or `{"repo", "cdn_url"}` for the round the reveal will land in.

    `reveal_wait`: for a repo commit, how long to wait for this round's hash to be revealed
    (a manifest commits both in one run; the classic command refuses at once).
    `preflight`: for a repo commit, download the round's `<cdn_url>/<stem>.js` as the validators
    will (`cdn_preflight`) instead of the HEAD check, and refuse unless `force` when any is
    missing; the result gains a `preflight` entry. Ignored, with a note, for a hash commit."""
    if commit_hash is not None:
        payload_keys = {"commit": codec.validate_commit_hash(commit_hash)}
    else:
        payload_keys = {"repo": codec.validate_repo(repo or ""), "cdn_url": codec.validate_cdn_url(cdn_url or "")}
    payload = codec.payload_json(payload_keys)
    codec.check_size(payload)
    current_round, schedule = _state_and_schedule(competition)
    block = _current_block(chain)
    choice = round_to_commit(current_round, schedule, block)
    if choice.straddles:
        if not force:
            raise CommitRefused(f"{choice.warning}. Commit again after block {choice.latest_reveal_block} "
                                "or force it (force: true / --force).")
        note("warning", choice.warning or "")
    target = choice.round
    hotkey = chain.hotkey_address(wallet)
    try:
        entries = codec.parse_commitments(chain.revealed_commitments(settings.netuid),
                                          commitment_window(target, current_round, competition.schedule))
    except Runner404Error as exc:
        if commit_hash is None:
            raise Runner404Error(f"Failed to fetch information about your commitments in round {target}: "
                                 f"{exc}") from None
        note("warning", f"Failed to fetch information about your commitments in round {target}: {exc}")
        entries = []
    mine = next((e for e in entries if e.hotkey == hotkey), None)
    if commit_hash is None and (mine is None or not mine.commit_hash) and reveal_wait > 0:
        window = commitment_window(target, current_round, competition.schedule)
        entries = _wait_for_hash(chain, settings, hotkey, window, reveal_wait, note)
        mine = next((e for e in entries if e.hotkey == hotkey), None)
    if commit_hash is None and (mine is None or not mine.commit_hash):
        raise CommitRefused(f"You have not committed hash for round {target}. Please commit hash first.")
    if commit_hash is not None and (mine is None or not (mine.repo and mine.cdn_url)):
        note("info", f"repo and cdn_url are not committed yet for round {target}; commit them once the hash is "
                     "revealed")
    try:
        warning = lock_warning(chain, wallet, hotkey, entries, settings)
        if warning:
            note("warning", warning)
    except (Runner404Error, NotImplementedError) as exc:
        note("warning", f"Failed to check conviction lock for your coldkey: {exc}")
    checked = None
    if preflight is not None and commit_hash is not None:
        note("warning", "the CDN preflight applies to repo/cdn_url commits; a hash commit has no CDN URL to check")
    elif preflight is not None:
        checked = _preflight(competition, payload_keys["cdn_url"], target, preflight, force, note)
    elif commit_hash is None and check_cdn_url:
        check_cdn(payload_keys["cdn_url"])
    receipt = chain.commit(wallet, settings.netuid, payload, blocks_until_reveal=2)
    if not receipt.success:  # the chain said no (e.g. an unregistered hotkey): the user can fix it
        raise CommitRefused(f"{receipt.error_name or 'CommitFailed'}: {receipt.message}")
    note("info", f"Committed in block {receipt.block} (extrinsic {receipt.extrinsic_id}); reveal expected "
                 f"around block {receipt.reveal_block}")
    result = {"success": True, **payload_keys, "round": target, "block": receipt.block,
              "extrinsic_id": receipt.extrinsic_id, "reveal_block": receipt.reveal_block}
    if checked is not None:
        result["preflight"] = checked.as_dict()
    return result


def list_commitments(chain: ChainClient, competition: Competition, settings: ChainSettings,
                     round_spec: int | str) -> tuple[int, list[dict[str, Any]]]:
    """The revealed commitments of a round, with the conviction-lock enrichment of §3.3."""
    try:
        current_round = competition.state().current_round
    except Runner404Error as exc:
        raise Runner404Error(f"Failed to fetch state: {exc}") from None
    target = resolve_round(round_spec, current_round)
    try:
        window = commitment_window(target, current_round, competition.schedule)
    except Runner404Error as exc:
        if "not yet revealed" in str(exc):
            raise
        raise Runner404Error(f"Failed to fetch schedule: {exc}") from None
    entries = codec.parse_commitments(chain.revealed_commitments(settings.netuid), window)
    owners: dict[str, str | None] = {}
    for entry in entries:
        try:
            owner = chain.hotkey_owner(entry.hotkey)
            owners[entry.hotkey] = owner if isinstance(owner, str) else None
        except Exception:  # classic: an owner that cannot be read is null
            owners[entry.hotkey] = None
    per_coldkey: dict[str, int] = {}
    for owner in owners.values():
        if owner:
            per_coldkey[owner] = per_coldkey.get(owner, 0) + 1
    locks: dict[str, float] = {}
    for coldkey in per_coldkey:
        try:
            locks[coldkey] = float(chain.coldkey_lock(coldkey, settings.netuid))
        except Exception:
            locks[coldkey] = 0.0
    rows = []
    for entry in entries:
        owner = owners[entry.hotkey]
        row = {**entry.as_dict(), "coldkey": owner, "locked_rho": None, "required_rho": None, "lock_sufficient": None}
        if owner:
            required = per_coldkey[owner] * settings.required_lock
            row.update(locked_rho=locks[owner], required_rho=required, lock_sufficient=locks[owner] >= required)
        rows.append(row)
    return target, rows
