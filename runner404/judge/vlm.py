"""The VLM client: OpenAI-compatible `/v1/chat/completions` over httpx (judge.md §2, §4).

Every call of every duel goes through one shared in-flight limit, so a fast server is kept busy
and a slow one is not flooded. A call is tried `max_retries` times with the reference's
temperature and seed schedule; a reply is accepted only when the lenient parser makes it valid
for the call's schema; after the last attempt the neutral fallback (if the call has one) is
returned instead of an error.
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


def chat_base(endpoint: str) -> str:
    """`<endpoint>/v1`: trailing `/` stripped, `/v1` appended unless already there."""
    base = endpoint.strip().rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def attempt_settings(attempt: int, seed_base: int) -> tuple[float, int]:
    """(temperature, seed) of attempt k = 0, 1, …: 0.0 first, then 0.1 + 0.05·k; seed base + k + 100."""
    return (0.0 if attempt == 0 else round(0.1 + 0.05 * attempt, 4)), seed_base + attempt + 100


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
    def __init__(self, endpoint: str, model: str, *, max_inflight: int = 32, timeout: float = 600.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_warning: Callable[[str], None] | None = None):
        self.base = chat_base(endpoint)
        self.model = model
        self.limit = asyncio.Semaphore(max_inflight)
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

    async def complete(self, messages: list[dict], *, label: str, schema: dict, temperature: float,
                       seed: int, max_tokens: int) -> str:
        """One chat completion; returns the message content (None → "")."""
        body = {
            "model": self.model, "messages": messages, "temperature": temperature, "seed": seed,
            "max_tokens": max_tokens,
            "response_format": {"type": "json_schema", "json_schema": {"name": f"{label}-response", "schema": schema}},
        }
        async with self.limit:
            response = await self.http.post(f"{self.base}/chat/completions", json=body)
        response.raise_for_status()
        try:
            return response.json()["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise VlmError("response is not a chat completion") from None

    async def call(self, messages: list[dict], *, label: str, schema: dict, seed_base: int, max_tokens: int,
                   max_retries: int, parse: Callable[[str, dict], dict], fallback: dict | None) -> dict:
        """The safe JSON call of judge.md §4: retries, repair, and the neutral fallback."""
        self.log.calls += 1
        last = "no attempt"
        for attempt in range(max_retries):
            temperature, seed = attempt_settings(attempt, seed_base)
            self.log.attempts += 1
            try:
                text = await self.complete(messages, label=label, schema=schema, temperature=temperature,
                                           seed=seed, max_tokens=max_tokens)
                return parse(text, schema)
            except Exception as exc:  # any failure of one attempt, per the reference
                reason = describe(exc) if isinstance(exc, httpx.HTTPError) else f"{type(exc).__name__}: {exc}"
                last = reason[:160]
                self.on_warning(f"{label}: attempt {attempt + 1}/{max_retries} failed: {last}")
                if attempt + 1 < max_retries:
                    await asyncio.sleep(0.5 * (attempt + 1))
        self.log.failures.append(f"{label}: {last}")
        if fallback is not None:
            self.on_warning(f"{label}: all {max_retries} attempts failed; using the neutral fallback")
            return dict(fallback)
        raise VlmError(f"{label}: all {max_retries} attempts failed (last: {last})")
