"""Health gating: a pod is used only once its health path answers 200.

Only 200 is healthy. Every other outcome (another 2xx such as 204, an error status, a timeout,
a refused connection) waits before the next poll and counts toward the window, so an odd status
can never become a busy loop (classic-cli D12).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from runner404.errors import InfraError
from runner404.engine.retry import describe


FIRST_POLL = 0.1  # polls start fast and double up to the pod's interval: a local service is up in
                  # a fraction of a second, a GPU model server in minutes


class HealthTimeout(InfraError):
    pass


def health_url(base: str, path: str) -> str:
    return path if path.startswith(("http://", "https://")) else base.rstrip("/") + path


async def wait_healthy(client: httpx.AsyncClient, base: str, path: str, timeout: float, interval: float,
                       alive: Callable[[], str | None] | None = None,
                       on_wait: Callable[[float, str], None] | None = None) -> float:
    """Poll until 200; returns the seconds it took. `alive()` returns a reason when the service died."""
    url = health_url(base, path)
    started = time.monotonic()
    last = "no answer yet"
    wait = min(interval, FIRST_POLL)
    while True:
        reason = alive() if alive else None
        if reason:
            raise InfraError(f"{reason} before {url} became healthy")
        try:
            response = await client.get(url, timeout=min(30.0, max(1.0, interval * 3)))
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = describe(exc)
        elapsed = time.monotonic() - started
        if elapsed + wait > timeout:
            raise HealthTimeout(f"{url} not healthy within {timeout:g}s (last: {last})")
        if on_wait:
            on_wait(elapsed, last)
        await asyncio.sleep(wait)
        wait = min(interval, wait * 2)
