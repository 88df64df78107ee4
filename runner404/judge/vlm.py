"""The VLM client: OpenAI-compatible `/v1/chat/completions` over httpx (judge.md §2, §4).

Every call of every duel goes through one shared in-flight limit, so a fast server is kept busy
and a slow one is not flooded. A call is tried `max_retries` times with the reference's
temperature and seed schedule (runner404.judge.calls.attempts); a reply is accepted only when the
lenient parser makes it valid for the call's schema; after the last attempt the neutral fallback
(if the call has one) is returned instead of an error.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runner404.deadline import within
from runner404.engine.retry import describe
from runner404.judge.calls import CallSpec, all_failed_message, attempt_failed_message, attempts, request_params
from runner404.judge.replies import parse_reply
from runner404.judge.rules import Rules


def chat_base(endpoint: str) -> str:
    """`<endpoint>/v1`: trailing `/` stripped, `/v1` appended unless already there."""
    base = endpoint.strip().rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


class ImageCache:
    """Local images as `data:` URLs; http(s) and data URLs pass through.

    The most recently used URLs are kept up to `max_bytes` in all (the images of the duels in
    flight, which their calls send again and again), so a long run's memory stays bounded.
    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._urls: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def url(self, image: str | Path) -> str:
        text = str(image)
        if text.startswith(("http://", "https://", "data:")):
            return text
        if text.startswith("file://"):
            text = text[len("file://"):]
        found = self._urls.get(text)
        if found is not None:
            self._urls.move_to_end(text)
            return found
        mime = mimetypes.guess_type(text)[0] or "image/png"
        data = base64.b64encode(Path(text).read_bytes()).decode("ascii")
        url = f"data:{mime};base64,{data}"
        if len(url) <= self.max_bytes:
            self._urls[text] = url
            self._bytes += len(url)
            while self._bytes > self.max_bytes:
                _, evicted = self._urls.popitem(last=False)
                self._bytes -= len(evicted)
        return url

    def __len__(self) -> int:
        return len(self._urls)

    @property
    def size(self) -> int:
        """Bytes of the URLs held."""
        return self._bytes


@dataclass
class CallLog:
    """What the client did, for the stage's records and the benchmarks."""

    calls: int = 0
    attempts: int = 0
    failures: list[str] = field(default_factory=list)


class VlmError(Exception):
    pass


LANE_CONNECTIONS = 8


class VlmClient:
    """Calls go over a few small HTTP clients ("lanes") of LANE_CONNECTIONS connections each,
    each call on the lane with the fewest calls in flight: httpcore scans a client's whole pool
    at every request and response, so one pool of `max_inflight` connections costs more runner
    CPU per call than the VLM needs to answer it."""

    def __init__(self, endpoint: str, limit: asyncio.Semaphore, *, timeout: float = 600.0, max_inflight: int = 32,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_warning: Callable[[str], None] | None = None, images: ImageCache | None = None):
        self.base = chat_base(endpoint)
        self.url = httpx.URL(f"{self.base}/chat/completions")  # parsed once, not at every call
        self.limit = limit  # shared by every client of the stage: one in-flight cap for all calls
        self.timeout = timeout  # of a whole request, body included (runner404.deadline)
        lanes = max(1, -(-max_inflight // LANE_CONNECTIONS))
        # with at most `max_inflight` calls in flight and each on the least busy lane, no lane
        # ever holds more than LANE_CONNECTIONS: none waits for a connection of its pool
        pool = httpx.Limits(max_connections=LANE_CONNECTIONS, max_keepalive_connections=LANE_CONNECTIONS)
        self.lanes = [httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=30.0), transport=transport, limits=pool)
                      for _ in range(lanes)]
        self.busy = [0] * lanes
        self.images = images if images is not None else ImageCache()
        self.log = CallLog()
        self.on_warning = on_warning or (lambda message: None)

    async def aclose(self) -> None:
        for lane in self.lanes:
            await lane.aclose()

    async def __aenter__(self) -> VlmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def content(self, parts: list[tuple[str, Any]]) -> list[dict]:
        """Message content from ("text", str) and ("image", path-or-url) parts, in order."""
        out = []
        for kind, value in parts:
            if kind == "text":
                out.append({"type": "text", "text": value})
            else:
                out.append({"type": "image_url", "image_url": {"url": self.images.url(value)}})
        return out

    async def complete(self, messages: list[dict], params: dict[str, Any]) -> str:
        """One chat completion; returns the message content (None → "")."""
        async with self.limit:
            lane = min(range(len(self.lanes)), key=self.busy.__getitem__)
            self.busy[lane] += 1
            try:
                request = self.lanes[lane].post(self.url, json={**params, "messages": messages})
                response = await within(self.timeout, request, f"POST {self.url}")
            finally:
                self.busy[lane] -= 1
        response.raise_for_status()
        try:
            return response.json()["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise VlmError("response is not a chat completion") from None

    async def call(self, messages: list[dict], call: CallSpec, rules: Rules) -> dict:
        """The safe JSON call of judge.md §4: attempts with the reference's temperature and seed
        schedule, lenient repair, and the neutral fallback when every attempt failed."""
        self.log.calls += 1
        last = "no attempt"
        for attempt in attempts(call, rules):
            self.log.attempts += 1
            try:
                text = await self.complete(messages, request_params(call, attempt, rules))
                return parse_reply(text, call.schema)
            except Exception as exc:  # any failure of one attempt, per the reference
                last = describe(exc) if isinstance(exc, httpx.HTTPError) else f"{type(exc).__name__}: {exc}"
                self.on_warning(attempt_failed_message(call, attempt, exc))
                if attempt.backoff:
                    await asyncio.sleep(attempt.backoff)
        self.log.failures.append(f"{call.label}: {last[:160]}")
        if call.fallback is not None:
            self.on_warning(all_failed_message(call))
            return dict(call.fallback)
        raise VlmError(f"{call.label}: all {call.max_retries} attempts failed (last: {last[:160]})")
