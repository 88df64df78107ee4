"""Retries for transient failures only, with exponential backoff and full jitter.

Transient: HTTP 5xx, 429 and 430 (Targon's rate limit), timeouts and connection errors.
Never retried: other 4xx (the request itself is wrong) and anything that is not an HTTP or
network failure.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

T = TypeVar("T")
TRANSIENT_STATUS = {429, 430}


class TransientError(Exception):
    """A failure worth another attempt (raised by code that knows, e.g. a busy service)."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code in TRANSIENT_STATUS
    return isinstance(exc, httpx.TimeoutException | httpx.TransportError)


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and the ledger (never a request body or header)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.method} {exc.request.url.copy_with(query=None)}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        return f"connection error ({type(exc).__name__}: {exc})" if str(exc) else f"connection error ({type(exc).__name__})"
    return f"{exc}" or type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base: float = 0.5  # seconds before the 2nd attempt (before jitter)
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)


OnAttempt = Callable[[int, BaseException | None, float | None], None]


async def retry(call: Callable[[], Awaitable[T]], policy: RetryPolicy,
                on_attempt: OnAttempt | None = None, rng: random.Random | None = None) -> T:
    """Run `call` until it succeeds, fails permanently or runs out of attempts.

    `on_attempt(attempt, error, next_delay)` is told about every attempt (error None = success;
    next_delay None = no further attempt), so callers can record each one.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            result = await call()
        except Exception as exc:
            again = attempt < policy.attempts and is_transient(exc)
            wait = policy.delay(attempt, rng) if again else None
            if on_attempt:
                on_attempt(attempt, exc, wait)
            if not again:
                raise
            await asyncio.sleep(wait)
        else:
            if on_attempt:
                on_attempt(attempt, None, None)
            return result
    raise AssertionError("unreachable")  # pragma: no cover
