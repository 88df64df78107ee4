"""How the validators' submission collector downloads a miner's `.js` files, as one reusable rule.

The collector (404-gen-subnet `submission-collector`, `download.py`; protocols.md §6.4) fetches
`{cdn_url}/{stem}.js` for every stem of the round:

- a plain `GET` whose response must be 2xx: redirects are **not** followed (a 3xx is a failure);
- at most 1 MiB: a larger `Content-Length` is refused before reading, and the body is streamed
  and cut off as soon as it passes the limit;
- two tries, 3 s apart, when the status is not 2xx or the request timed out or failed to
  connect; a file over the limit is not tried again;
- timeouts of 300 s (10 s to connect).

runner404 adds one check the collector leaves to the renderer: the file must be UTF-8 text.
`fetch` stages and the commit preflight both use `fetch_js`, so "the preflight found 128/128" means
what the validators' download will find. A source may also be a `file://` URL or a local path
(a folder of published files), read with the same size and text checks.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

MAX_JS_BYTES = 1024 * 1024
TRIES = 2
RETRY_WAIT = 3.0
TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0
CONCURRENCY = 10  # the collector's max_concurrent_requests
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class FetchFailure(Exception):
    """One stem could not be downloaded. `kind` is one of: status, redirect, too_large, not_utf8,
    timeout, connection, not_found (a local file); `retry` says whether another try may help."""

    def __init__(self, reason: str, kind: str, retry: bool, **detail: Any):
        super().__init__(reason)
        self.reason, self.kind, self.retry = reason, kind, retry
        self.detail = {"kind": kind, **detail}


def size_text(count: int) -> str:
    if count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MiB"
    if count % 1024 == 0:
        return f"{count // 1024} KiB"
    return f"{count} bytes"


# -- URLs ---------------------------------------------------------------------------------------

def template_problem(template: str) -> str | None:
    """Why a URL template is unusable, or None. Only `{stem}` is replaced."""
    unknown = [m.group(0) for m in _PLACEHOLDER.finditer(template) if m.group(1) != "stem"]
    if unknown:
        return f"unknown placeholder {unknown[0]} (only {{stem}} is replaced)"
    if template.count("{stem}") > 1:
        return "{stem} may appear only once"
    scheme = urlsplit(template).scheme.lower() if "://" in template else ""
    if scheme not in ("", "http", "https", "file"):
        return f"unsupported scheme {scheme}:// (use http(s)://, file:// or a folder)"
    return None


def js_url(template: str, stem: str) -> str:
    """`{stem}` replaced, or the collector's `{cdn_url}/{stem}.js` when the template has none."""
    if "{stem}" in template:
        return template.replace("{stem}", stem)
    return f"{template.rstrip('/')}/{stem}.js"


def is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https") if "://" in url else False


def local_path(url: str, base_dir: Path | None = None) -> Path:
    """The file behind a `file://` URL or a (manifest-relative) path."""
    if url.lower().startswith("file://"):
        return Path(url2pathname(unquote(urlsplit(url).path)))
    path = Path(url).expanduser()
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


# -- checks -------------------------------------------------------------------------------------

def check_text(data: bytes) -> bytes:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FetchFailure(f"not UTF-8 text ({exc.reason} at byte {exc.start})", "not_utf8", False,
                           byte=exc.start) from None
    return data


def _too_large(limit: int, how: str, size: int | None = None) -> FetchFailure:
    return FetchFailure(f"over the {size_text(limit)} limit ({how})", "too_large", False, limit=limit, size=size)


def read_local(path: Path, max_bytes: int = MAX_JS_BYTES) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(max_bytes, f"{size} bytes", size)
        data = path.read_bytes()
    except FileNotFoundError:
        raise FetchFailure("not found", "not_found", False, path=str(path)) from None
    except IsADirectoryError:
        raise FetchFailure("is a folder", "not_found", False, path=str(path)) from None
    except OSError as exc:
        raise FetchFailure(f"cannot be read ({exc.strerror})", "not_found", False, path=str(path)) from None
    if len(data) > max_bytes:
        raise _too_large(max_bytes, f"{len(data)} bytes", len(data))
    return check_text(data)


def timeouts(timeout: float = TIMEOUT) -> httpx.Timeout:
    return httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))


async def download_once(client: httpx.AsyncClient, url: str, max_bytes: int = MAX_JS_BYTES,
                        timeout: float = TIMEOUT) -> bytes:
    """One GET as the collector makes it (no redirects, size cap while streaming)."""
    try:
        async with client.stream("GET", url, timeout=timeouts(timeout), follow_redirects=False) as response:
            status = response.status_code
            if 300 <= status < 400:
                location = response.headers.get("location", "?")
                raise FetchFailure(f"HTTP {status} redirect to {location} (the validators' collector does not "
                                   "follow redirects)", "redirect", True, status=status, location=location)
            if not 200 <= status < 300:
                text = f"HTTP {status} {response.reason_phrase}".rstrip()
                raise FetchFailure(text, "status", True, status=status)
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise _too_large(max_bytes, f"Content-Length {length}", int(length))
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(max_bytes, f"more than {max_bytes} bytes sent")
                chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise FetchFailure(f"timed out after {timeout:g} s ({type(exc).__name__})", "timeout", True) from None
    except httpx.HTTPError as exc:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise FetchFailure(f"connection error ({text})", "connection", True) from None
    return check_text(b"".join(chunks))


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_JS_BYTES
    tries: int = TRIES
    retry_wait: float = RETRY_WAIT
    timeout: float = TIMEOUT


OnTry = Callable[[int, FetchFailure, bool], None]  # (try number, failure, will try again)


async def fetch_js(client: httpx.AsyncClient | None, url: str, limits: Limits = Limits(), *,
                   base_dir: Path | None = None, on_try: OnTry | None = None) -> bytes:
    """The bytes of one `.js` file, or `FetchFailure` whose reason ends with the number of tries.

    `url` is http(s) (needs `client`), `file://` or a local path (relative to `base_dir`).
    """
    if not is_http(url):
        return read_local(local_path(url, base_dir), limits.max_bytes)
    assert client is not None
    tries = max(1, limits.tries)
    for attempt in range(1, tries + 1):
        try:
            return await download_once(client, url, limits.max_bytes, limits.timeout)
        except FetchFailure as failure:
            again = failure.retry and attempt < tries
            if on_try:
                on_try(attempt, failure, again)
            if not again:
                if failure.retry:
                    failure.reason += f" ({attempt} tr{'ies' if attempt != 1 else 'y'})"
                failure.detail["tries"] = attempt
                raise
            await asyncio.sleep(limits.retry_wait)
    raise AssertionError("unreachable")  # pragma: no cover


# -- a whole check (the commit preflight) -------------------------------------------------------

@dataclass
class CheckResult:
    """What `check_stems` found: stems found, and the reason of each one that was not."""

    source: str
    found: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.found) + len(self.missing)


async def check_stems(source: str, stems: list[str], limits: Limits = Limits(), *,
                      concurrency: int = CONCURRENCY, base_dir: Path | None = None) -> CheckResult:
    """Download every stem's file the collector's way (and discard it)."""
    result = CheckResult(source)
    outcome: dict[str, str | None] = {}
    limit = asyncio.Semaphore(max(1, concurrency))
    async with httpx.AsyncClient() as client:
        async def one(stem: str) -> None:
            async with limit:
                try:
                    await fetch_js(client, js_url(source, stem), limits, base_dir=base_dir)
                    outcome[stem] = None
                except FetchFailure as failure:
                    outcome[stem] = failure.reason

        await asyncio.gather(*(one(stem) for stem in stems))
    for stem in stems:
        reason = outcome[stem]
        if reason is None:
            result.found.append(stem)
        else:
            result.missing[stem] = reason
    return result
