"""Our own async client of the Targon workload REST API (reference protocols.md §4), over httpx.

We speak the small REST API directly instead of using targon-sdk (its async path has no retries,
ignores base-URL settings and may prompt on the terminal or save keys; reference §4.10).

Retries (runner404.engine.retry):
- list, state, delete and deploy are idempotent: retried on every transient failure (5xx, 429,
  430, timeouts, connection errors);
- create is not idempotent: a retry after the server may have acted would create (and bill) a
  second workload that nobody deletes. It is therefore retried only when the request certainly
  was not acted on: the connection could not be made (connect error or timeout, no free
  connection in the pool), or the server answered 429/430 (rate limited) or 503 (unavailable),
  which say the request was refused rather than done. A read timeout, a connection dropped
  after the request was sent, or another 5xx (a gateway may answer 502/504 after the upstream
  created it) raise at once.

Errors raise `TargonError` (an InfraError) with `status_code` (None without a response) and a
body excerpt of at most 500 characters. The API key is sent only in the Authorization header:
it never appears in an exception, a log line or a repr (an echo of it in a response body is
masked).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from runner404.engine.retry import RetryPolicy, TransientError, describe, retry
from runner404.errors import InfraError, UsageError
from runner404.secret import MASK, Secret

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.targon.com"
WORKLOADS = "/tha/v2/workloads"
BODY_EXCERPT = 500
MAX_LIST_PAGES = 100

TERMINAL_STATUSES = frozenset({"failed", "error", "stopped", "deleted", "terminated", "suspended"})
RUNNING_STATUSES = frozenset({"running", "ready", "active", "deployed", "verified"})
# Answers saying the request was refused, not acted on: a create may be sent again.
CREATE_RETRY_STATUS = frozenset({429, 430, 503})
# Failures before the request reached the server: a create may be sent again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class TargonError(InfraError):
    """A failed Targon API call: `status_code` is None when no response arrived."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "",
                 method: str = "", path: str = ""):
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.method = method
        self.path = path


class _Retryable(TransientError):
    """An HTTP answer worth another attempt; carries the error to raise if none is left."""

    def __init__(self, error: TargonError):
        super().__init__(str(error))
        self.error = error


class _Status:
    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES  # type: ignore[attr-defined]

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATUSES  # type: ignore[attr-defined]


@dataclass(frozen=True)
class WorkloadInfo(_Status):
    """A list item; `status` is lower-case, `url` is None until the workload has one."""

    uid: str
    name: str
    status: str
    url: str | None
    created_at: str | None


@dataclass(frozen=True)
class WorkloadState(_Status):
    """A workload's state; unknown status values are neither running nor terminal."""

    uid: str
    status: str
    message: str
    url: str | None
    ready_replicas: int
    total_replicas: int


def build_create_request(name: str, image: str, resource: str, port: int, args: Sequence[str] = (),
                         env: Mapping[str, str | Secret] | None = None, replicas: int = 1,
                         container_concurrency: int = 1) -> dict[str, Any]:
    """The create body of reference §4.3 (the classic pods' shape; empty optional fields omitted).

    Secret env values are revealed here: never log the returned body.
    """
    if not name or not image or not resource:
        raise ValueError("name, image and resource are required")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("port must be an integer 1-65535")
    if replicas < 1 or container_concurrency < 1:
        raise ValueError("replicas and container_concurrency must be >= 1")
    if isinstance(args, str):
        raise ValueError("args must be a sequence of strings, not a string")
    body: dict[str, Any] = {"type": "SERVERLESS", "name": name, "image": image, "resource_name": resource}
    if env:
        body["envs"] = [{"name": key, "value": value.reveal() if isinstance(value, Secret) else str(value)}
                        for key, value in env.items()]
    if args:
        body["args"] = [str(arg) for arg in args]
    body["ports"] = [{"port": port, "protocol": "TCP"}]
    body["serverless_config"] = {
        "min_replicas": replicas, "max_replicas": replicas,
        "container_concurrency": container_concurrency, "target_concurrency": 1,
        "visibility": "external",
    }
    return body


def _first_url(urls: Any) -> str | None:
    if isinstance(urls, list):
        for entry in urls:
            if isinstance(entry, dict) and isinstance(entry.get("url"), str) and entry["url"]:
                return entry["url"]
    return None


def _status(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class TargonClient:
    """Async Targon REST client; use `async with TargonClient(key) as targon:` or call aclose()."""

    def __init__(self, api_key: str | Secret, base_url: str = DEFAULT_BASE_URL, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, retry_policy: RetryPolicy | None = None):
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        # Checked here, without echoing the value: httpx would reject a bad header value with an
        # exception that quotes it.
        if not isinstance(key, str) or not key:
            raise UsageError("the Targon API key is empty")
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            raise UsageError("the Targon API key contains spaces or non-printable characters")
        base_url = (base_url or "").strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"Targon API URL must start with http:// or https://: {base_url[:100]!r}")
        self.base_url = base_url
        self.retry_policy = retry_policy or RetryPolicy()
        self._mask = (key,)
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout), transport=transport,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                     "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"TargonClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> TargonClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- API -------------------------------------------------------------------------------

    async def create(self, request: Mapping[str, Any]) -> str:
        """Create a workload (not yet deployed); returns its uid."""
        payload = await self._call("POST", WORKLOADS, json=dict(request), idempotent=False)
        uid = payload.get("uid") if isinstance(payload, dict) else None
        if not isinstance(uid, str) or not uid:
            raise TargonError(f"Targon API POST {WORKLOADS}: the answer has no workload uid",
                              status_code=200, method="POST", path=WORKLOADS)
        return uid

    async def deploy(self, uid: str) -> dict[str, Any]:
        """Deploy a created workload; returns the raw answer {uid, name, state, cost_per_hour}."""
        payload = await self._call("POST", f"{self._path(uid)}/deploy")
        return payload if isinstance(payload, dict) else {}

    async def list(self) -> list[WorkloadInfo]:
        """Every serverless workload not deleted (follows `next_cursor`, guarded against loops)."""
        items: dict[str, WorkloadInfo] = {}
        seen_cursors: set[str] = set()
        params: dict[str, str] = {"type": "SERVERLESS"}
        for _ in range(MAX_LIST_PAGES):
            payload = await self._call("GET", WORKLOADS, params=dict(params))
            page = payload.get("items") if isinstance(payload, dict) else None
            for item in page if isinstance(page, list) else []:
                info = self._info(item)
                if info is not None and info.status != "deleted" and info.uid not in items:
                    items[info.uid] = info
            cursor = payload.get("next_cursor") if isinstance(payload, dict) else None
            if not isinstance(cursor, str) or not cursor or cursor in seen_cursors:
                break
            seen_cursors.add(cursor)
            params["cursor"] = cursor
        return list(items.values())

    async def state(self, uid: str) -> WorkloadState | None:
        """The workload's state, or None when the API does not know it (404)."""
        payload = await self._call("GET", f"{self._path(uid)}/state", missing_ok=True)
        if payload is None:
            return None
        payload = payload if isinstance(payload, dict) else {}
        return WorkloadState(uid=str(payload.get("uid") or uid), status=_status(payload.get("status")),
                             message=str(payload.get("message") or ""), url=_first_url(payload.get("urls")),
                             ready_replicas=_int(payload.get("ready_replicas")),
                             total_replicas=_int(payload.get("total_replicas")))

    async def delete(self, uid: str) -> bool:
        """Delete a workload: True if deleted, False if the API did not know it (404)."""
        return await self._call("DELETE", self._path(uid), missing_ok=True, empty_ok=True) is not None

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _path(uid: str) -> str:
        if not isinstance(uid, str) or not uid:
            raise ValueError("a workload uid is required")
        return f"{WORKLOADS}/{quote(uid, safe='')}"

    @staticmethod
    def _info(item: Any) -> WorkloadInfo | None:
        if not isinstance(item, dict) or not item.get("uid"):
            return None
        state = item.get("state") if isinstance(item.get("state"), dict) else {}
        created = item.get("created_at")
        return WorkloadInfo(uid=str(item["uid"]), name=str(item.get("name") or ""),
                            status=_status(state.get("status", item.get("status"))),
                            url=_first_url(item.get("urls")) or _first_url(state.get("urls")),
                            created_at=str(created) if created is not None else None)

    def _redact(self, text: str) -> str:
        for secret in self._mask:
            text = text.replace(secret, MASK)
        return text

    def _excerpt(self, text: str) -> str:
        text = self._redact(text)
        return text if len(text) <= BODY_EXCERPT else text[:BODY_EXCERPT - 1] + "…"

    async def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None,
                    idempotent: bool = True, missing_ok: bool = False, empty_ok: bool = False) -> Any:
        """One API call with retries; returns the decoded JSON (None: 404 with missing_ok)."""
        where = f"{method} {path}"

        async def attempt() -> Any:
            not_retried: TargonError | None = None
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                if idempotent or isinstance(exc, _NOT_SENT):
                    raise
                not_retried = self._transport_error(where, exc, method, path)
            if not_retried is not None:
                raise not_retried
            if missing_ok and response.status_code == 404:
                return None
            if response.status_code >= 400:
                error = TargonError(f"Targon API {where} failed: HTTP {response.status_code}: "
                                    f"{self._excerpt(response.text) or '(empty body)'}",
                                    status_code=response.status_code, body=self._excerpt(response.text),
                                    method=method, path=path)
                code = response.status_code
                retryable = (code >= 500 or code in CREATE_RETRY_STATUS) if idempotent \
                    else code in CREATE_RETRY_STATUS
                if retryable:
                    raise _Retryable(error)
                raise error
            return self._decode(response, where, method, path, empty_ok)

        def on_attempt(number: int, error: BaseException | None, wait: float | None) -> None:
            if error is not None and wait is not None:
                log.info("Targon API %s: attempt %d failed (%s); retrying in %.1fs",
                         where, number, self._redact(describe(error)), wait)

        failure: TargonError | None = None
        try:
            return await retry(attempt, self.retry_policy, on_attempt)
        except _Retryable as exc:
            failure = exc.error
        except httpx.TransportError as exc:
            failure = self._transport_error(where, exc, method, path)
        # Raised outside the except blocks: no chained httpx exception (its request holds the
        # Authorization header) rides along on the error.
        raise failure

    def _transport_error(self, where: str, exc: httpx.TransportError, method: str, path: str) -> TargonError:
        return TargonError(f"Targon API {where} failed: {self._redact(describe(exc))}",
                           method=method, path=path)

    def _decode(self, response: httpx.Response, where: str, method: str, path: str, empty_ok: bool) -> Any:
        if empty_ok and not response.content.strip():
            return {}
        content_type = response.headers.get("Content-Type", "")
        try:
            if "json" not in content_type.lower():
                raise ValueError(content_type)
            return response.json()
        except ValueError:
            raise TargonError(f"Targon API {where}: expected JSON, got {content_type or 'no content type'}: "
                              f"{self._excerpt(response.text)}", status_code=response.status_code,
                              body=self._excerpt(response.text), method=method, path=path) from None
