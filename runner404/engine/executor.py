"""The executor: runs a plan's stages over the dependency graph with asyncio.

Stages whose dependencies are done start at once, so independent stages run in parallel; a
stage whose dependency failed is blocked. Pods are started on first use and torn down at the end
(unless kept), also when the run fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner404.engine import atomic
from runner404.engine.context import StageContext
from runner404.engine.events import EventLog
from runner404.engine.ledger import Ledger, LedgerState
from runner404.errors import ExitCode, InfraError, Runner404Error
from runner404.manifest.model import Manifest
from runner404.plan.planner import RUN, Plan, StagePlan, make_plan, recheck
from runner404.pods.manager import PodManager
from runner404.secret import SecretUnavailable

# stage kind -> module with `DEFAULT_CONCURRENCY` and `async def run(ctx: StageContext)`
KINDS = {
    "pod": "runner404.stages.pod",
    "stop-pods": "runner404.stages.stop_pods",
    "render": "runner404.stages.render",
    "fetch": "runner404.stages.fetch",
    "generate": "runner404.stages.generate",
    "judge": "runner404.stages.judge",
    "report": "runner404.stages.report",
    "commit": "runner404.stages.commit",
    "commitments": "runner404.stages.commitments",
}

# Files a stage kind points the user at when they exist (report.html), relative to its output
# folder: kept here, so a skipped stage's module need not be imported to find them.
ARTIFACTS = {"report": ("report.html",)}

SKIPPED, DONE, PARTIAL, FAILED, BLOCKED, INTERRUPTED = (
    "skipped", "done", "partial", "failed", "blocked", "interrupted")


@dataclass
class StageOutcome:
    id: str
    kind: str
    status: str
    items: int = 0
    done: int = 0  # done by this run
    failed: dict[str, str] = field(default_factory=dict)  # item -> reason
    error: str | None = None
    infra: bool = False
    seconds: float = 0.0
    summary: list[str] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)


@dataclass
class RunResult:
    run_id: str
    exit_code: int
    outcomes: list[StageOutcome]
    log: Path
    teardown_errors: list[str] = field(default_factory=list)
    interrupted: bool = False


@dataclass
class RunOptions:
    force: set[str] = field(default_factory=set)
    targon_url: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)


def state_paths(manifest: Manifest, state_dir: Path | None) -> tuple[Path, Path]:
    """The ledger file and the runs folder."""
    root = state_dir or manifest.base_dir / ".runner404"
    return root / "state.sqlite", root / "runs"


def refuse_links(base: Path, output: str) -> None:
    """An output folder reached through a symbolic link would be written outside the project:
    refuse it (links inside output folders are replaced, never followed)."""
    path = Path(output).expanduser()
    walk = Path(path.anchor) if path.is_absolute() else base
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        walk = walk / part
        if walk.is_symlink():
            raise Runner404Error(f"output folder {output} goes through the symbolic link {walk}; runner404 does not "
                                 "write through links: use a real folder")


def load_kind(kind: str):
    if kind not in KINDS:
        raise Runner404Error(f"stage kind '{kind}' is not available in runner404 yet")
    return importlib.import_module(KINDS[kind])


class Executor:
    def __init__(self, manifest: Manifest, ledger: Ledger, run_id: str, run_dir: Path, events: EventLog,
                 options: RunOptions):
        self.manifest, self.ledger, self.run_id, self.run_dir = manifest, ledger, run_id, run_dir
        self.events, self.options = events, options
        self.pods = PodManager(manifest, ledger, run_id, run_dir / "pods", events, options.environ,
                               options.targon_url)
        self.outcomes: dict[str, StageOutcome] = {}
        self.plan: Plan | None = None

    async def run(self) -> RunResult:
        manifest = self.manifest
        plan = self.plan = make_plan(manifest, LedgerState(self.ledger, manifest), self.options.force)
        self.events("run_started", run=self.run_id, manifest=manifest.file,
                    stages=[{"id": s.id, "kind": s.kind, "action": s.action, "reasons": s.reasons,
                             "items": len(s.items), "step": s.step} for s in plan.stages])
        interrupted = False
        teardown_errors: list[str] = []
        try:
            needed = {pod for s in plan.stages if s.action == RUN for pod in s.pods}
            self.pods.will_keep = {pod for s in plan.stages if s.action == RUN and s.kind == "pod" for pod in s.pods}
            await self.pods.cleanup_stale(needed)
            tasks: dict[str, asyncio.Task] = {}
            for stage_plan in plan.stages:  # in step order, so dependencies exist already
                tasks[stage_plan.id] = asyncio.ensure_future(self._stage(stage_plan, tasks))
            await asyncio.gather(*tasks.values())
        except asyncio.CancelledError:
            interrupted = True
            for stage_plan in plan.stages:
                self.outcomes.setdefault(stage_plan.id, StageOutcome(stage_plan.id, stage_plan.kind, INTERRUPTED))
        finally:
            self.events("teardown", pods=sorted(self.pods.held))
            teardown = asyncio.ensure_future(self.pods.teardown())
            while True:  # a Ctrl-C now must not abandon the deletions under way
                try:
                    teardown_errors = await asyncio.shield(teardown)
                    break
                except asyncio.CancelledError:
                    interrupted = True
                    asyncio.current_task().uncancel()
            for error in teardown_errors:
                self.events("pod_stop_failed", error=error)
        outcomes = [self.outcomes[s.id] for s in plan.stages]
        code = self._exit_code(outcomes, teardown_errors, interrupted)
        self.events("run_finished", run=self.run_id, exit_code=int(code),
                    outcomes={o.id: o.status for o in outcomes})
        return RunResult(self.run_id, code, outcomes, self.events.path, teardown_errors, interrupted)

    @staticmethod
    def _exit_code(outcomes: list[StageOutcome], teardown_errors: list[str], interrupted: bool) -> int:
        if interrupted:
            return ExitCode.INTERRUPTED
        if teardown_errors or any(o.status == FAILED and o.infra for o in outcomes):
            return ExitCode.INFRA
        if any(o.status in (FAILED, BLOCKED) for o in outcomes):
            return ExitCode.FAILED
        if any(o.status == PARTIAL for o in outcomes):
            return ExitCode.PARTIAL
        return ExitCode.OK

    async def _stage(self, stage_plan: StagePlan, tasks: dict[str, asyncio.Task]) -> None:
        sid = stage_plan.id
        for dep in stage_plan.after:
            await asyncio.shield(tasks[dep])  # a cancelled dependant must not cancel its dependency
        blocked = [d for d in stage_plan.after if self.outcomes[d].status in (FAILED, BLOCKED, INTERRUPTED)]
        if blocked:
            self.outcomes[sid] = StageOutcome(sid, stage_plan.kind, BLOCKED, error=f"{', '.join(blocked)} failed")
            self.events("stage_blocked", stage=sid, because=blocked)
            return
        ran = [d for d in stage_plan.after if self.outcomes[d].status in (DONE, PARTIAL)]
        if stage_plan.action != RUN and ran:
            stage_plan.action, stage_plan.reasons = recheck(stage_plan, LedgerState(self.ledger, self.manifest), ran)
        if stage_plan.action != RUN:
            self.outcomes[sid] = StageOutcome(sid, stage_plan.kind, SKIPPED, items=len(stage_plan.items))
            self.events("stage_skipped", stage=sid, reasons=stage_plan.reasons)
        else:
            self.outcomes[sid] = await self._run_stage(stage_plan)
        self.outcomes[sid].artifacts = self._artifacts(sid)

    def _artifacts(self, sid: str) -> list[Path]:
        """Files a stage kind points the user at (report.html), when they exist."""
        stage = self.manifest.stages[sid]
        names = ARTIFACTS.get(stage.kind, ())
        folder = self.manifest.resolve_path(stage.output) if stage.output else None
        return [folder / name for name in names if folder and (folder / name).is_file()]

    async def _run_stage(self, stage_plan: StagePlan) -> StageOutcome:
        stage = self.manifest.stages[stage_plan.id]
        outcome = StageOutcome(stage.id, stage.kind, FAILED, items=len(stage_plan.items))
        started = time.monotonic()
        state = LedgerState(self.ledger, self.manifest)
        forced = stage.id in self.options.force or "*" in self.options.force
        done_before = frozenset() if forced else state.done_items(stage.id, stage_plan.fingerprint)
        todo = [i for i in stage_plan.items if i not in done_before]
        inputs = self.plan_inputs(stage_plan)
        self.ledger.start_stage(self.run_id, stage.id, stage.kind, stage_plan.fingerprint, inputs,
                                len(stage_plan.items))
        self.events("stage_started", stage=stage.id, kind=stage.kind, items=len(stage_plan.items),
                    todo=len(todo), reasons=stage_plan.reasons)
        ctx: StageContext | None = None
        try:
            from runner404.engine.retry import RetryPolicy

            module = load_kind(stage.kind)
            if stage.output:
                refuse_links(self.manifest.base_dir, stage.output)
                atomic.sweep(self.manifest.resolve_path(stage.output))
            ctx = StageContext(
                stage=stage, manifest=self.manifest, ledger=self.ledger, run_id=self.run_id,
                fingerprint=stage_plan.fingerprint, items=stage_plan.items, todo=todo, pods=self.pods,
                event=self.events, retry_policy=RetryPolicy(attempts=int(stage.params.get("retries", 3))),
                concurrency=int(stage.params.get("concurrency", module.DEFAULT_CONCURRENCY)),
            )
            await module.run(ctx)
        except asyncio.CancelledError:
            self.ledger.end_stage(self.run_id, stage.id, INTERRUPTED)
            outcome.status = INTERRUPTED
            self.outcomes[stage.id] = outcome
            raise
        except (Runner404Error, SecretUnavailable) as exc:
            outcome.error = str(exc)
            outcome.infra = isinstance(exc, InfraError)
        except Exception as exc:  # a bug in a stage must not lose the other stages' work
            outcome.error = f"internal error: {type(exc).__name__}: {exc}"
        else:
            outcome.status = PARTIAL if ctx.failed else DONE
        if ctx is not None:  # what a stage did and said counts even when it then failed
            outcome.done, outcome.failed, outcome.summary = ctx.done_count, dict(ctx.failed), ctx.summary
        outcome.seconds = time.monotonic() - started
        self.ledger.end_stage(self.run_id, stage.id, outcome.status, outcome.error)
        self.events("stage_finished", stage=stage.id, status=outcome.status, done=outcome.done,
                    failed=len(outcome.failed), error=outcome.error, seconds=round(outcome.seconds, 2))
        return outcome

    def plan_inputs(self, stage_plan: StagePlan) -> dict:
        from runner404.plan.fingerprint import stage_inputs

        upstream = {}
        for dep in stage_plan.after:
            upstream[dep] = self.plan.stage(dep).fingerprint  # type: ignore[union-attr]
        return stage_inputs(self.manifest.stages[stage_plan.id], self.manifest, upstream)
