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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runner404.engine.retry import describe
from runner404.judge.calls import CallSpec, all_failed_message, attempt_failed_message, attempts, request_params
from runner404.judge.replies import parse_reply
from runner404.judge.rules import Rules


def chat_base(endpoint: str) -> str:
    """`<endpoint>/v1`: trailing `/` stripped, `/v1` appended unless already there."""
    base = endpoint.strip().rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


class ImageCache:
    """Local images as `data:` URLs (read once); http(s) and data URLs pass through."""

    def __init__(self) -> None:
        self._urls: dict[str, str] = {}

    def url(self, image: str | Path) -> str:
        text = str(image)
        if text.startswith(("http://", "https://", "data:")):
            return text
        if text.startswith("file://"):
            text = text[len("file://"):]
        if text not in self._urls:
            mime = mimetypes.guess_type(text)[0] or "image/png"
            data = base64.b64encode(Path(text).read_bytes()).decode("ascii")
            self._urls[text] = f"data:{mime};base64,{data}"
        return self._urls[text]


@dataclass
class CallLog:
    """What the client did, for the stage's records and the benchmarks."""

    calls: int = 0
    attempts: int = 0
    failures: list[str] = field(default_factory=list)


class VlmError(Exception):
    pass


class VlmClient:
    def __init__(self, endpoint: str, limit: asyncio.Semaphore, *, timeout: float = 600.0, max_inflight: int = 32,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_warning: Callable[[str], None] | None = None):
        self.base = chat_base(endpoint)
        self.limit = limit  # shared by every client of the stage: one in-flight cap for all calls
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=30.0), transport=transport,
                                      limits=httpx.Limits(max_connections=max_inflight + 4,
                                                          max_keepalive_connections=max_inflight + 4))
        self.images = ImageCache()
        self.log = CallLog()
        self.on_warning = on_warning or (lambda message: None)

    async def aclose(self) -> None:
        await self.http.aclose()

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
            response = await self.http.post(f"{self.base}/chat/completions", json={**params, "messages": messages})
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
