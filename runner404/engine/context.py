"""What a stage implementation gets: its items, its folders, its pods, and ways to report.

An item is recorded as done (with the sizes of the files it wrote) in the same transaction as its
successful attempt, after its files were written atomically; so a crash leaves every item either
done with complete outputs, or not done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner404.engine.ledger import Ledger
from runner404.errors import Runner404Error
from runner404.manifest.model import Manifest, Stage
from runner404.plan.inputs import StageInputs

if TYPE_CHECKING:  # httpx comes with these: a run whose stages are all skipped never needs it
    from runner404.engine.retry import RetryPolicy
    from runner404.pods.manager import PodManager
    from runner404.pods.provider import Workload


class ItemFailure(Runner404Error):
    """A permanent failure of one item, with an optional structured detail (kept in the ledger)."""

    def __init__(self, reason: str, detail: Any = None):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


@dataclass
class StageContext:
    stage: Stage
    manifest: Manifest
    ledger: Ledger
    run_id: str
    fingerprint: str
    items: list[str]  # all items of the stage
    todo: list[str]  # those not done yet under this fingerprint
    pods: PodManager
    event: Callable[..., None]
    retry_policy: RetryPolicy
    concurrency: int
    summary: list[str] = field(default_factory=list)  # lines shown when the stage ends
    done_count: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    _inputs: StageInputs | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.stage.id

    @property
    def params(self) -> dict[str, Any]:
        return self.stage.params

    @property
    def output_dir(self) -> Path:
        return self.manifest.resolve_path(self.stage.output or f"out/{self.stage.id}")

    def path(self, value: str) -> Path:
        return self.manifest.resolve_path(value)

    async def workloads(self, pod_id: str | None = None) -> list[Workload]:
        return await self.pods.acquire(pod_id or self.stage.pod or "")

    # -- reporting ---------------------------------------------------------------------------

    def item_done(self, item: str, files: list[Path], attempt: int = 1) -> None:
        root = self.manifest.base_dir.resolve()
        outputs = {}
        for file in files:  # named relative to the manifest's folder when inside it
            path = file.resolve()
            outputs[str(path.relative_to(root)) if path.is_relative_to(root) else str(path)] = path.stat().st_size
        if self._inputs is None:
            self._inputs = StageInputs(self.stage, self.manifest)
        self.ledger.item_done(self.run_id, self.id, self.fingerprint, item, attempt, outputs,
                              self._inputs.token(item))
        self.done_count += 1
        self.failed.pop(item, None)
        self.event("item_done", stage=self.id, item=item, attempt=attempt)

    def item_failed(self, item: str, reason: str, detail: Any = None) -> None:
        self.ledger.item_failed(self.run_id, self.id, self.fingerprint, item, reason, detail)
        self.failed[item] = reason
        self.event("item_failed", stage=self.id, item=item, reason=reason)

    def attempt_failed(self, item: str | None, attempt: int, error: str, retry_in: float | None) -> None:
        self.ledger.attempt_failed(self.run_id, self.id, item, attempt, error)
        self.event("attempt_failed", stage=self.id, item=item, attempt=attempt, error=error,
                   retry_in=None if retry_in is None else round(retry_in, 2))

    # -- running items -----------------------------------------------------------------------

    async def map(self, items: list[str], work: Callable[[str], Awaitable[list[Path]]],
                  concurrency: int | None = None) -> None:
        """Run `work(item)` for each item, `concurrency` at a time, retrying transient failures.

        `work` returns the files it wrote (atomically). A permanent failure (ItemFailure, a 4xx,
        or retries exhausted) is recorded for that item and the others go on.
        """
        from runner404.engine.retry import describe, is_transient

        limit = asyncio.Semaphore(concurrency or self.concurrency)

        async def one(item: str) -> None:
            async with limit:
                for attempt in range(1, self.retry_policy.attempts + 1):
                    try:
                        files = await work(item)
                    except ItemFailure as exc:
                        self.attempt_failed(item, attempt, exc.reason, None)
                        self.item_failed(item, exc.reason, exc.detail)
                        return
                    except Exception as exc:
                        again = attempt < self.retry_policy.attempts and is_transient(exc)
                        wait = self.retry_policy.delay(attempt) if again else None
                        self.attempt_failed(item, attempt, describe(exc), wait)
                        if not again:
                            self.item_failed(item, describe(exc))
                            return
                        await asyncio.sleep(wait)
                    else:
                        self.item_done(item, files, attempt)
                        return

        await asyncio.gather(*(one(item) for item in items))
