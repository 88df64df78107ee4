"""`render`: turn each `<stem>.js` into views with the render service (protocols.md §2).

Per stem, three requests run at once: the white set and the gray set (`POST /render`, one call
each, integer angles) and the grid (`POST /render/grid`, no query). Every PNG is checked (chunks,
CRCs, data length, size) before the stem counts as done, and the stem is written all-or-nothing:
`<out>/<stem>/{grid.png, white/<view>.png, gray/<view>.png}` appears by one rename, then
`<out>/<stem>.png` (a copy of the grid, the classic README's layout). A 422 is a permanent
failure of that stem with the renderer's `{stage, rule, detail}` list kept in the ledger;
5xx, 429/430, timeouts and connection errors are retried. `timeout` bounds each request as a
whole, from connecting to the last byte of its body (a trickling body is cut too).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import time
from collections.abc import Awaitable
from pathlib import Path

import httpx

from runner404 import png
from runner404.deadline import within
from runner404.engine import atomic
from runner404.engine.context import ItemFailure, StageContext
from runner404.errors import InfraError
from runner404.manifest.model import parse_duration
from runner404.views import BACKGROUND, GRID_SIZE, View, view_sets

DEFAULT_CONCURRENCY = 2
HEAD_START = 0.002  # seconds a rendered file waits before its checks, for the next file's requests
MAX_SOURCE = 1024 * 1024


def _angle(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def view_query(views: tuple[View, ...], bg: str, params: dict) -> dict[str, str]:
    return {
        "thetas": ",".join(_angle(v.theta) for v in views),
        "phis": ",".join(_angle(v.phi) for v in views),
        "img_size": str(params.get("img_size", 1024)),
        "cam_radius": str(params.get("cam_radius", 2.0)),
        "cam_fov_deg": str(params.get("cam_fov_deg", 49.1)),
        "bg_color": bg,
        "lighting": params.get("lighting", "follow"),
    }


def _rejection(response: httpx.Response, stem: str) -> ItemFailure:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    failures = body.get("failures") or []
    rules = "; ".join(f"{f.get('rule')}: {f.get('detail')}" for f in failures[:3]) or body.get("error", "")
    return ItemFailure(f"renderer rejected {stem}.js ({body.get('error', 'HTTP 422')}): {rules}",
                       {"status": 422, **body})


async def _post(client: httpx.AsyncClient, url: str, source: str, stem: str, limit: float,
                query: dict | None = None) -> httpx.Response:
    """One render request, `limit` seconds at most from connecting to the last byte of the body."""
    response = await within(limit, client.post(url, json={"source": source}, params=query), f"{stem}: {url}")
    if response.status_code == 422:
        raise _rejection(response, stem)
    response.raise_for_status()
    return response


async def _together(*requests: Awaitable[httpx.Response]) -> list[httpx.Response]:
    """All the responses, or the first failure with the other requests cancelled (so a failed
    file holds no renderer slot while it waits for its next attempt)."""
    tasks = [asyncio.ensure_future(request) for request in requests]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _checked(data: bytes, size: int | None, what: str) -> bytes:
    try:
        width, height = png.verify(data)
    except png.PngError as exc:
        raise ItemFailure(f"{what}: invalid PNG ({exc})") from None
    if size is not None and (width, height) != (size, size):
        raise ItemFailure(f"{what}: expected {size}x{size} px, got {width}x{height}")
    return data


def _images(response: httpx.Response, views: tuple[View, ...], size: int, what: str) -> list[bytes]:
    if len(views) == 1:
        return [_checked(response.content, size, f"{what} {views[0].name}")]
    try:
        images = response.json()["images"]
    except (ValueError, KeyError, TypeError):
        raise ItemFailure(f"{what}: response is not the JSON {{images: [...]}} of {len(views)} views") from None
    if not isinstance(images, list) or len(images) != len(views):
        count = len(images) if isinstance(images, list) else "no"
        raise ItemFailure(f"{what}: render returned {count} images, expected {len(views)}")
    out = []
    for view, text in zip(views, images):
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ItemFailure(f"{what} {view.name}: invalid base64 image") from None
        out.append(_checked(data, size, f"{what} {view.name}"))
    return out


async def wait_ready(client: httpx.AsyncClient, base: str, timeout: float, interval: float) -> None:
    """`/health` is 200 before the browser is up; `/ping` is 204 until it is, then 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = await client.get(f"{base}/ping", timeout=10.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        await asyncio.sleep(interval)
    raise InfraError(f"renderer at {base} not ready within {timeout:g}s (/ping: {last})")


async def run(ctx: StageContext) -> None:
    params = ctx.params
    sets = view_sets(params.get("views"))
    size = int(params.get("img_size", 1024))
    source_dir = ctx.path(params["input"])
    out = ctx.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if not ctx.todo:
        return
    workloads = await ctx.workloads()
    pod = ctx.manifest.pods[ctx.stage.pod or ""]
    limit = parse_duration(params.get("timeout", "300s"))
    timeout = httpx.Timeout(limit, connect=30.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        await asyncio.gather(*(wait_ready(client, w.url, pod.health.timeout, min(pod.health.interval, 1.0))
                               for w in workloads))
        urls = itertools.cycle([w.url for w in workloads])
        assigned = {stem: next(urls) for stem in ctx.todo}  # spread stems over the replicas
        rendering = asyncio.Semaphore(ctx.concurrency)  # files whose requests are at the renderer

        async def render(stem: str) -> list[Path]:
            js = source_dir / f"{stem}.js"
            try:
                data = js.read_bytes()
            except FileNotFoundError:
                raise ItemFailure(f"no {stem}.js in {params['input']}") from None
            if len(data) > MAX_SOURCE:
                raise ItemFailure(f"{stem}.js is {len(data)} bytes, over the 1 MiB limit")
            try:
                source = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ItemFailure(f"{stem}.js is not UTF-8 text") from None
            base = assigned[stem]
            async with rendering:
                white, gray, grid = await _together(
                    _post(client, f"{base}/render", source, stem, limit,
                          view_query(sets["white"], BACKGROUND["white"], params)),
                    _post(client, f"{base}/render", source, stem, limit,
                          view_query(sets["gray"], BACKGROUND["gray"], params)),
                    _post(client, f"{base}/render/grid", source, stem, limit),
                )
            # The next file's requests go out first (a short head start, as sending them takes a
            # few turns of the loop), then this file is checked and written in a worker thread.
            await asyncio.sleep(HEAD_START)
            return await asyncio.to_thread(store, stem, white, gray, grid)

        def store(stem: str, white: httpx.Response, gray: httpx.Response, grid: httpx.Response) -> list[Path]:
            files = {"grid.png": _checked(grid.content, GRID_SIZE, "grid")}
            for kind, response in (("white", white), ("gray", gray)):
                for view, image in zip(sets[kind], _images(response, sets[kind], size, kind)):
                    files[f"{kind}/{view.name}.png"] = image
            staged = atomic.staging_dir(out / stem)
            for relative, image in files.items():
                (staged / relative).parent.mkdir(parents=True, exist_ok=True)
                (staged / relative).write_bytes(image)
            atomic.replace_dir(staged, out / stem)
            atomic.write_bytes(out / f"{stem}.png", files["grid.png"])
            return [out / stem / relative for relative in files] + [out / f"{stem}.png"]

        # A file checks and writes its views after making room for the next file's requests, so
        # the renderer never waits for that: up to twice as many items run as files render.
        await ctx.map(ctx.todo, render, concurrency=2 * ctx.concurrency)
    ctx.summary.append(f"{ctx.done_count} stems rendered to {params.get('output') or ctx.stage.output}")
