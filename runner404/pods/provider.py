"""The provider protocol: start a pod replica and stop it again, whatever runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner404.engine.ledger import Ledger
from runner404.manifest.model import Pod

if TYPE_CHECKING:
    import httpx


@dataclass
class Workload:
    """One running replica of a pod."""

    pod: str
    replica: int
    uid: str  # Targon uid, `local-<pid>`, or the endpoint URL
    name: str
    url: str
    provider: str
    created: bool  # started by this run (False: reused or an endpoint)
    keep: bool = False


@dataclass
class PodContext:
    run_id: str
    ledger: Ledger
    workdir: Path  # the manifest's folder: where local pods start
    log_dir: Path
    event: Callable[..., None]  # event(name, **fields): progress and the run log
    _http: httpx.AsyncClient | None = field(default=None, repr=False)

    @property
    def http(self) -> httpx.AsyncClient:
        """Made on first use: a run that starts and stops no pod never imports httpx."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class Provider(Protocol):
    async def start(self, pod: Pod, replica: int, name: str, spec_hash: str, ctx: PodContext) -> Workload:
        """Create (or reuse) the replica, wait for its URL and its health; register it in the
        ledger the moment it exists, so an interrupt can always clean it up."""

    async def stop(self, workload: Workload, ctx: PodContext) -> None:
        """Delete the replica and confirm it is gone."""

    async def reuse(self, row: Any, pod: Pod, ctx: PodContext) -> Workload | None:
        """A workload from an earlier run with the same spec, if it is still healthy."""
