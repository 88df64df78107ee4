"""The core entry points of `404-run run`, `plan` (with state) and `status`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runner404.engine.events import EventLog, Listener
from runner404.engine.executor import Executor, RunOptions, RunResult, state_paths
from runner404.engine.ledger import Ledger, LedgerState, new_run_id
from runner404.engine.signals import run_interruptible
from runner404.manifest.model import Manifest
from runner404.plan.planner import EmptyState, Plan, make_plan


def run_manifest(manifest: Manifest, *, command: str, state_dir: Path | None = None,
                 options: RunOptions | None = None, listeners: list[Listener] | None = None,
                 on_signal: Callable[[int], None] = lambda count: None) -> RunResult:
    """Execute a manifest idempotently; Ctrl-C is handled (see engine.signals)."""
    options = options or RunOptions()
    ledger_path, runs_dir = state_paths(manifest, state_dir)
    ledger = Ledger(ledger_path)
    run_id = new_run_id()
    run_dir = runs_dir / run_id
    events = EventLog(run_dir / "runner.jsonl", listeners)
    ledger.start_run(run_id, manifest.file, command)
    result: RunResult | None = None
    try:
        result = run_interruptible(lambda: Executor(manifest, ledger, run_id, run_dir, events, options).run(),
                                   on_signal)
        return result
    finally:
        status = "interrupted" if result is None or result.interrupted else (
            "ok" if result.exit_code == 0 else "failed")
        ledger.end_run(run_id, status, result.exit_code if result else 130)
        events.close()
        ledger.close()


@contextmanager
def _readonly_ledger(manifest: Manifest, state_dir: Path | None) -> Iterator[Ledger | None]:
    ledger_path, _ = state_paths(manifest, state_dir)
    if not ledger_path.exists():
        yield None
        return
    ledger = Ledger(ledger_path, readonly=True)
    try:
        yield ledger
    finally:
        ledger.close()


def plan_manifest(manifest: Manifest, *, state_dir: Path | None = None, force: set[str] | None = None) -> Plan:
    """The plan `run` would follow, from the ledger when there is one; changes nothing."""
    with _readonly_ledger(manifest, state_dir) as ledger:
        state = LedgerState(ledger, manifest) if ledger else EmptyState()
        return make_plan(manifest, state, force)


@dataclass
class StageStatus:
    id: str
    kind: str
    run_id: str | None
    status: str  # never ran | running | done | partial | failed | interrupted | blocked
    started: float | None
    ended: float | None
    items_total: int
    items_done: int
    failed: dict[str, str]  # item -> reason, under the last run's fingerprint
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def stage_status(manifest: Manifest, *, state_dir: Path | None = None) -> list[StageStatus]:
    """The last run of each stage of the manifest and the state of its items."""
    result = []
    with _readonly_ledger(manifest, state_dir) as ledger:
        for stage in manifest.stages.values():
            row = ledger.last_stage_row(stage.id) if ledger else None
            if row is None:
                result.append(StageStatus(stage.id, stage.kind, None, "never ran", None, None, 0, 0, {}, None))
                continue
            items = ledger.items(stage.id, row["fingerprint"])
            done = LedgerState(ledger, manifest).done_items(stage.id, row["fingerprint"])
            failed = {r["item"]: r["reason"] for r in items if r["status"] == "failed"}
            result.append(StageStatus(stage.id, stage.kind, row["run_id"], row["status"], row["started"],
                                      row["ended"], row["items_total"], len(done), failed, row["error"]))
    return result
