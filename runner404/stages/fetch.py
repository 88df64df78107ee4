"""`fetch`: download one `<stem>.js` per prompt stem, the way the validators' collector does.

The items are the stems of the stage's prompt set; each is fetched from `url` (a template with
`{stem}`, or a base to which `/{stem}.js` is appended) by runner404.collector's rule: no
redirects, at most `max_size` bytes (1 MiB), `retries` tries (2) `retry_wait` apart, UTF-8 text.
The file is written atomically as `<out>/<stem>.js`, so the folder is a valid `render` input.
A stem that cannot be downloaded fails alone, with its URL and reason in the ledger and the run
summary ("HTTP 404 Not Found (2 tries)", "over the 1 MiB limit", "not UTF-8 text", "timed out");
rerunning fetches only the stems that are not done.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from runner404.collector import FetchFailure, Limits, fetch_js, js_url
from runner404.engine import atomic
from runner404.engine.context import ItemFailure, StageContext
from runner404.manifest.model import parse_duration

DEFAULT_CONCURRENCY = 10


def limits(params: dict) -> Limits:
    return Limits(max_bytes=int(params.get("max_size", Limits.max_bytes)),
                  tries=int(params.get("retries", Limits.tries)),
                  retry_wait=parse_duration(params.get("retry_wait", Limits.retry_wait)),
                  timeout=parse_duration(params.get("timeout", Limits.timeout)))


async def run(ctx: StageContext) -> None:
    params = ctx.params
    out = ctx.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if not ctx.todo:
        return
    template = str(params["url"])
    rule = limits(params)
    async with httpx.AsyncClient() as client:
        async def fetch(stem: str) -> list[Path]:
            url = js_url(template, stem)

            def on_try(attempt: int, failure: FetchFailure, again: bool) -> None:
                if again:  # the last try is recorded with the item's failure
                    ctx.event("attempt_failed", stage=ctx.id, item=stem, attempt=attempt, error=failure.reason,
                              retry_in=rule.retry_wait)

            try:
                data = await fetch_js(client, url, rule, base_dir=ctx.manifest.base_dir, on_try=on_try)
            except FetchFailure as failure:
                raise ItemFailure(f"{url}: {failure.reason}", {"url": url, **failure.detail}) from None
            target = out / f"{stem}.js"
            atomic.write_bytes(target, data)
            return [target]

        await ctx.map(ctx.todo, fetch)
    failed = len(ctx.failed)
    where = params.get("output") or ctx.stage.output
    ctx.summary.append(f"{ctx.done_count} of {len(ctx.todo)} stems fetched to {where}"
                       + (f"; {failed} could not be downloaded" if failed else ""))
