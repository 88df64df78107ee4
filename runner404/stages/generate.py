"""`generate`: one `.js` per prompt stem from generator pods (protocols.md §1).

The stems still missing are split into one shard per generator workload (`replicas: N`), and
each shard goes through the contract: wait for `/status` to be `ready` (or `complete`), submit
batches with `POST /generate`, follow `/status` while it generates, download `GET /results`.
Every problem — a busy generator (409), a `replace` request, a warm-up or generation timeout, a
`_failed.json` entry, a hostile or oversized archive — becomes a per-item failure with its
reason; the other shards and items go on.

The results ZIP is untrusted: no path from the archive is used. A member counts only when its
file name (after the last `/` or `\\`) is `<stem>.js` for a stem this batch asked for; it is
written as `<out>/<stem>.js`. The archive is capped at 64 MiB, a `.js` at 1 MiB (read through a
bounded reader, so a lying header cannot inflate more), `_failed.json` at 16 KiB, and the archive
may hold at most one entry per requested stem plus `_failed.json`.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from runner404.engine import atomic
from runner404.engine.context import StageContext
from runner404.engine.retry import describe, is_transient
from runner404.errors import Runner404Error
from runner404.manifest.model import parse_duration
from runner404.prompts import PromptSet

DEFAULT_CONCURRENCY = 1
MAX_ZIP = 64 * 1024 * 1024
MAX_JS = 1024 * 1024
MAX_FAILED_JSON = 16 * 1024
MAX_STATUS_FAILURES = 18  # consecutive failed /status calls that mean the pod is gone (validators' rule)


class BatchFailure(Exception):
    """Every stem of a batch failed for one reason."""


@dataclass
class Timing:
    warmup: float
    generation: float
    poll: float


def _shards(stems: list[str], count: int) -> list[list[str]]:
    """Round-robin in prompt order: disjoint, balanced, and stable across reruns."""
    return [stems[i::count] for i in range(count) if stems[i::count]]


def _batches(stems: list[str], size: int | None) -> list[list[str]]:
    if not size:
        return [stems]
    return [stems[i:i + size] for i in range(0, len(stems), size)]


class Generator:
    """The client side of the generator contract, for one workload."""

    def __init__(self, ctx: StageContext, client: httpx.AsyncClient, base: str, timing: Timing):
        self.ctx, self.client, self.base, self.timing = ctx, client, base.rstrip("/"), timing
        self.attempts = ctx.retry_policy.attempts  # for /generate and /results

    async def status(self) -> dict:
        """`GET /status`, retrying transient errors; 18 failures in a row mean the pod is gone."""
        failures = 0
        while True:
            try:
                response = await self.client.get(f"{self.base}/status")
                response.raise_for_status()
                body = response.json()
                if not isinstance(body, dict) or not isinstance(body.get("status"), str):
                    raise BatchFailure("invalid /status response shape")
                return body
            except (httpx.HTTPError, ValueError) as exc:
                if isinstance(exc, httpx.HTTPError) and not is_transient(exc):
                    raise BatchFailure(f"/status failed: {describe(exc)}") from None
                failures += 1
                if failures >= MAX_STATUS_FAILURES:
                    raise BatchFailure(f"generator unreachable: {failures} failed /status calls "
                                       f"in a row (last: {describe(exc)})") from None
                await asyncio.sleep(self.timing.poll)

    async def pause(self, polls: int) -> None:
        """Poll fast at first (a batch may be done in seconds), then every `poll_interval`."""
        await asyncio.sleep(min(self.timing.poll, 0.05 * 2 ** polls))

    async def wait_for(self, accept: set[str], wait: set[str], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            body = await self.status()
            state = body["status"]
            if state in accept:
                return body
            if state == "replace":
                raise BatchFailure("generator requested pod replacement (status=replace)")
            if state not in wait:
                raise BatchFailure(f"unexpected generator status while {what}: {state}")
            if time.monotonic() > deadline:
                raise BatchFailure(f"timed out after {timeout:g}s {what} (status={state})")
            await self.pause(polls)
            polls += 1

    async def submit(self, prompts: list[dict], seed: int) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self.client.post(f"{self.base}/generate", json={"prompts": prompts, "seed": seed})
            except httpx.HTTPError as exc:
                if attempt == self.attempts:
                    raise BatchFailure(f"failed to submit batch: {describe(exc)}") from None
                await asyncio.sleep(min(1.5 * 2 ** (attempt - 1), 10))
                continue
            if response.status_code == 409:  # busy with another batch: wait for it, then resubmit
                current = _json(response).get("current_status", "unknown")
                if attempt == self.attempts:
                    raise BatchFailure(f"generator rejected batch (current_status={current})")
                await self.wait_for({"ready", "complete"}, {"generating", "warming_up"},
                                    self.timing.generation, "waiting for a busy generator")
                continue
            if response.status_code >= 500 or response.status_code in (429, 430):
                if attempt == self.attempts:
                    raise BatchFailure(f"failed to submit batch: HTTP {response.status_code}")
                await asyncio.sleep(min(1.5 * 2 ** (attempt - 1), 10))
                continue
            if response.status_code != 200:
                raise BatchFailure(f"generator refused the batch: HTTP {response.status_code} "
                                   f"{response.text[:300]}")
            accepted = _json(response).get("accepted")
            if accepted != len(prompts):
                self.ctx.event("batch_partial", stage=self.ctx.id, accepted=accepted, total=len(prompts))
            return

    async def results(self) -> bytes:
        for attempt in range(1, self.attempts + 1):
            try:
                async with self.client.stream("GET", f"{self.base}/results") as response:
                    if response.status_code == 409:
                        detail = _json_text(await response.aread()).get("detail", "results not available")
                        raise BatchFailure(f"/results rejected: {detail}")
                    response.raise_for_status()
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_ZIP:
                            raise BatchFailure(f"results archive over {MAX_ZIP // (1024 * 1024)} MiB")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                if attempt == self.attempts or not is_transient(exc):
                    raise BatchFailure(f"downloading /results failed: {describe(exc)}") from None
                await asyncio.sleep(min(1.5 * 2 ** (attempt - 1), 10))
        raise AssertionError("unreachable")  # pragma: no cover

    async def run_batch(self, prompts: list[dict], seed: int) -> bytes:
        # `generating` may be our own batch from an interrupted run (resubmitting it is
        # idempotent) or someone else's (409: submit() waits for it to finish).
        await self.wait_for({"ready", "complete", "generating"}, {"warming_up"}, self.timing.warmup,
                            "waiting for readiness")
        await self.submit(prompts, seed)
        deadline = time.monotonic() + self.timing.generation
        last = None
        polls = 0
        while True:
            body = await self.status()
            state = body["status"]
            if state == "complete":
                break
            if state == "replace":
                raise BatchFailure("generator requested pod replacement while generating (status=replace)")
            if state not in ("generating", "ready", "warming_up"):
                raise BatchFailure(f"unexpected generator status while generating: {state}")
            progress = (body.get("progress"), body.get("total"))
            if progress != last and state == "generating":
                last = progress
                self.ctx.event("batch_progress", stage=self.ctx.id, url=self.base,
                               progress=progress[0], total=progress[1])
            if time.monotonic() > deadline:
                raise BatchFailure(f"timed out after {self.timing.generation:g}s waiting for generation")
            await self.pause(polls)
            polls += 1
        return await self.results()


def _json(response: httpx.Response) -> dict:
    return _json_text(response.content)


def _json_text(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def unpack(archive: bytes, stems: list[str], out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the requested `<stem>.js` members into `out`; returns (written, failed reasons)."""
    wanted = set(stems)
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
        members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BatchFailure(f"invalid ZIP archive from /results ({exc})") from None
    if len(members) > len(wanted) + 1:
        raise BatchFailure(f"results archive has {len(members)} entries; at most {len(wanted) + 1} "
                           f"(one per requested stem and _failed.json) are allowed")
    if not members:
        raise BatchFailure("results archive is empty")
    failed: dict[str, str] = {}
    by_stem: dict[str, list[zipfile.ZipInfo]] = {}
    for member in members:
        name = member.filename.replace("\\", "/").rsplit("/", 1)[-1]
        if name == "_failed.json":
            failed.update(_failed_map(zf, member, wanted))
        elif name.endswith(".js") and name[:-3] in wanted:
            by_stem.setdefault(name[:-3], []).append(member)
    written: dict[str, Path] = {}
    for stem, found in by_stem.items():
        if len(found) > 1:
            failed[stem] = f"results archive holds {len(found)} entries for {stem}.js"
            continue
        try:
            data = _bounded_read(zf, found[0], MAX_JS)
        except BatchFailure as exc:
            failed[stem] = str(exc)
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            failed[stem] = f"{stem}.js is not UTF-8 text"
            continue
        path = out / f"{stem}.js"
        atomic.write_bytes(path, data)
        written[stem] = path
        failed.pop(stem, None)
    for stem in stems:
        if stem not in written and stem not in failed:
            failed[stem] = "missing from the generator's results"
    return written, failed


def _bounded_read(zf: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    if member.file_size > limit:
        raise BatchFailure(f"{member.filename} is {member.file_size} bytes, over the {limit // 1024} KiB limit")
    try:
        with zf.open(member) as handle:
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BatchFailure(f"cannot read {member.filename} from the results archive ({exc})") from None
    if len(data) > limit:
        raise BatchFailure(f"{member.filename} inflates past the {limit // 1024} KiB limit")
    return data


def _failed_map(zf: zipfile.ZipFile, member: zipfile.ZipInfo, wanted: set[str]) -> dict[str, str]:
    try:
        failures = json.loads(_bounded_read(zf, member, MAX_FAILED_JSON))
    except (BatchFailure, ValueError):
        return {}
    if not isinstance(failures, dict):
        return {}
    return {stem: f"generator failed: {str(reason)[:300]}" for stem, reason in failures.items() if stem in wanted}


def _timing(params: dict) -> Timing:
    return Timing(parse_duration(params.get("warmup_timeout", "4h")),
                  parse_duration(params.get("generation_timeout", "2h")),
                  parse_duration(params.get("poll_interval", "2s")))


async def run(ctx: StageContext) -> None:
    prompt_set: PromptSet = ctx.manifest.prompt_sets[ctx.stage.prompts or ""]
    seed = ctx.params.get("seed", prompt_set.seed)
    out = ctx.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if not ctx.todo:
        return
    pod = ctx.manifest.pods[ctx.stage.pod or ""]
    by_stem = {p.stem: p for p in prompt_set.prompts}
    if pod.provider.type == "targon" and any(prompt_set.local_image(by_stem[s]) for s in ctx.todo):
        raise Runner404Error(f"prompt set '{prompt_set.id}' has local image paths, which a generator on "
                             "Targon cannot read; use http(s) image URLs")
    workloads = await ctx.workloads()
    timing = _timing(ctx.params)
    timeout = httpx.Timeout(120.0, connect=30.0)

    async def shard(base: str, stems: list[str]) -> None:
        async with httpx.AsyncClient(timeout=timeout) as client:
            generator = Generator(ctx, client, base, timing)
            for batch in _batches(stems, ctx.params.get("batch_size")):
                prompts = [{"stem": s, "image_url": prompt_set.image_url(by_stem[s])} for s in batch]
                ctx.event("batch_started", stage=ctx.id, url=base, stems=len(batch))
                try:
                    archive = await generator.run_batch(prompts, seed)
                    written, failed = unpack(archive, batch, out)
                except BatchFailure as exc:
                    written, failed = {}, {s: str(exc) for s in batch}
                for stem in batch:
                    if stem in written:
                        ctx.item_done(stem, [written[stem]])
                    else:
                        ctx.item_failed(stem, failed[stem])

    shards = _shards(ctx.todo, len(workloads))
    await asyncio.gather(*(shard(w.url, stems) for w, stems in zip(workloads, shards)))
    ctx.summary.append(f"{ctx.done_count} of {len(ctx.todo)} stems generated into "
                       f"{ctx.params.get('output') or ctx.stage.output}")
