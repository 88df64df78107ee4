"""`commitments`: a round's revealed commitments (classic `list-all`), parsed as the validators do.

Chain state changes all the time, so this stage always runs. It writes
`<out>/commitments.jsonl` (one entry per line, sorted by commit block) and `<out>/commitments.json`.
"""

from __future__ import annotations

import asyncio
import json

from runner404.chain.client import open_chain
from runner404.chain.flows import list_commitments
from runner404.engine import atomic
from runner404.engine.context import StageContext
from runner404.stages.chain_settings import settings

DEFAULT_CONCURRENCY = 1


async def run(ctx: StageContext) -> None:
    chain_settings, competition = settings(ctx)

    def work():
        return list_commitments(open_chain(chain_settings.network), competition, chain_settings,
                                ctx.params.get("round", "current"))

    round_number, rows = await asyncio.to_thread(work)
    out = ctx.output_dir
    atomic.write_text(out / "commitments.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    atomic.write_text(out / "commitments.json", json.dumps({"round": round_number, "commitments": rows}, indent=2)
                      + "\n")
    sufficient = sum(1 for row in rows if row["lock_sufficient"])
    ctx.summary.append(f"round {round_number}: {len(rows)} commitments, {sufficient} with a sufficient lock")
