"""`commit`: a hash, or a repo and CDN URL, as a reveal commitment (chain.md, classic-cli §3.1–3.2).

A commit is an item like any other: once done it is never sent again for the same parameters,
so rerunning a manifest does not commit twice. `<out>/commit.json` holds the result.
"""

from __future__ import annotations

import asyncio
import json

from runner404.chain.client import WalletRef, open_chain
from runner404.chain.flows import Preflight, commit
from runner404.engine import atomic
from runner404.engine.context import StageContext
from runner404.manifest.model import parse_duration
from runner404.stages.chain_settings import settings

DEFAULT_CONCURRENCY = 1
REVEAL_WAIT = 300.0  # seconds a repo commit waits for this round's hash to be revealed


async def run(ctx: StageContext) -> None:
    if not ctx.todo:
        return
    chain_settings, competition = settings(ctx)
    wallet_spec = ctx.params["wallet"]
    wallet = WalletRef(wallet_spec["name"], wallet_spec["hotkey"], wallet_spec.get("path", "~/.bittensor/wallets"))

    def note(level: str, text: str) -> None:
        ctx.event("chain_note", stage=ctx.id, level=level, text=text)
        if level == "warning":
            ctx.summary.append(f"warning: {text}")

    def work() -> dict:
        chain = open_chain(chain_settings.network)
        return commit(chain, competition, chain_settings, wallet, commit_hash=ctx.params.get("hash"),
                      repo=ctx.params.get("repo"), cdn_url=ctx.params.get("cdn_url"),
                      check_cdn_url=bool(ctx.params.get("check_cdn", True)), force=bool(ctx.params.get("force")),
                      reveal_wait=parse_duration(ctx.params.get("reveal_wait", REVEAL_WAIT)), note=note,
                      preflight=Preflight() if ctx.params.get("preflight") else None)

    result = await asyncio.to_thread(work)
    path = ctx.output_dir / "commit.json"
    atomic.write_text(path, json.dumps(result, indent=2) + "\n")
    ctx.summary.append(f"committed {', '.join(k for k in ('commit', 'repo', 'cdn_url') if k in result)} for round "
                       f"{result['round']} in block {result['block']}")
    ctx.item_done(ctx.id, [path])
