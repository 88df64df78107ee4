"""A time limit on a whole HTTP request: connecting, sending and reading the entire body.

httpx's own timeouts bound each socket operation, so a server that trickles its body a few
bytes at a time never trips them. `within` bounds the whole exchange instead and raises a
`RequestTimeout`, an `httpx.TimeoutException`, so the retry rules treat it like any timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import httpx

T = TypeVar("T")


class RequestTimeout(httpx.TimeoutException):
    """No complete response within the request's time limit."""


async def within(seconds: float, request: Awaitable[T], what: str) -> T:
    """Await `request` (which must read the whole body, as `client.post` does), cancelling it
    after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await request
    except TimeoutError:
        raise RequestTimeout(f"{what}: no complete response within the {seconds:g}s timeout") from None
