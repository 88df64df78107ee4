"""The planner that `plan` prints and `run` executes: per stage RUN or SKIP, with reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from runner404.diagnostics import Diagnostic
from runner404.manifest.model import Manifest, Stage
from runner404.plan import graph
from runner404.plan.fingerprint import digest, stage_inputs
from runner404.plan.inputs import STAGE_FILES

RUN, SKIP = "RUN", "SKIP"
ITEM_KINDS = {"generate", "fetch", "render", "judge"}  # kinds whose items are prompt stems
VOLATILE_KINDS = {"commitments"}  # read state that changes outside the run: always run


@dataclass(frozen=True)
class StageRecord:
    """What the ledger remembers of a stage's last run."""

    fingerprint: str
    inputs: dict[str, Any]  # stage_inputs() of that run


class StateView(Protocol):
    def last_stage(self, stage_id: str) -> StageRecord | None: ...

    def done_items(self, stage_id: str, fingerprint: str) -> frozenset[str]:
        """Items done under `fingerprint` (whichever run did them) whose outputs still exist."""


class EmptyState:
    """No ledger yet: every stage is new."""

    def last_stage(self, stage_id: str) -> StageRecord | None:
        return None

    def done_items(self, stage_id: str, fingerprint: str) -> frozenset[str]:
        return frozenset()


@dataclass
class StagePlan:
    id: str
    kind: str
    step: int
    action: str
    reasons: list[str]
    items: list[str]
    pods: list[str]
    after: list[str]
    output: str | None
    fingerprint: str
    description: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["item_count"] = len(self.items)
        del data["items"]
        return data


@dataclass
class PodPlan:
    id: str
    provider: str
    service: str
    replicas: int
    keep: bool
    used_by: list[str]


@dataclass
class Plan:
    name: str
    file: str
    steps: list[list[str]]
    stages: list[StagePlan]
    pods: list[PodPlan]
    warnings: list[Diagnostic] = field(default_factory=list)

    def stage(self, stage_id: str) -> StagePlan:
        return next(s for s in self.stages if s.id == stage_id)

    def to_json(self) -> dict:
        return {
            "name": self.name, "file": self.file, "steps": self.steps,
            "stages": [s.to_json() for s in self.stages],
            "pods": [asdict(p) for p in self.pods],
            "warnings": [w.to_json() for w in self.warnings],
        }


def dependency_map(manifest: Manifest) -> dict[str, list[str]]:
    return {sid: manifest.dependencies(sid) for sid in manifest.stages}


def stage_items(stage: Stage, manifest: Manifest, items_of: dict[str, list[str]]) -> list[str]:
    """The units of work of a stage: prompt stems, or one item for whole-stage kinds."""
    if stage.kind in ("generate", "fetch", "judge"):
        prompt_set = manifest.prompt_sets.get(stage.prompts or "")
        return prompt_set.stems if prompt_set else []
    if stage.kind == "render":
        producer = next((e.on for e in manifest.edges if e.stage == stage.id and e.why != "needs"), None)
        if producer is not None:
            return items_of.get(producer, [])
        folder = manifest.resolve_path(str(stage.params.get("input", "")))
        return sorted(p.stem for p in folder.glob("*.js")) if folder.is_dir() else []
    if stage.kind == "pod":
        return [stage.pod or ""]
    return [stage.id]


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    reasons = []
    old_params, new_params = old.get("params", {}), new.get("params", {})
    for key in sorted(set(old_params) | set(new_params)):
        before, after = old_params.get(key), new_params.get(key)
        if before != after:
            if isinstance(before, dict | list) or isinstance(after, dict | list) or before is None or after is None:
                reasons.append(f"parameter {key} changed")
            else:
                reasons.append(f"parameter {key} changed {before}→{after}")
    if old.get("output") != new.get("output"):
        reasons.append(f"output changed {old.get('output')}→{new.get('output')}")
    if old.get("service") != new.get("service"):
        reasons.append("pod image changed")
    if old.get("inputs") != new.get("inputs"):
        reasons.append("input changed")
    if old.get("runner") != new.get("runner"):
        reasons.append(f"runner version changed {old.get('runner')}→{new.get('runner')}")
    return reasons or ["fingerprint changed"]


def _decide(kind: str, record: StageRecord | None, done: frozenset[str], fingerprint: str, inputs: dict,
            items: list[str], forced: bool) -> tuple[str, list[str]]:
    missing = [i for i in items if i not in done]
    if forced:
        return RUN, ["forced"]
    if kind in VOLATILE_KINDS:
        return RUN, ["reads live chain state"]
    if items and not missing:  # done under this very fingerprint, perhaps by an earlier run than the last
        return SKIP, [f"up to date ({len(items)}/{len(items)} items done)" if len(items) > 1 else "up to date"]
    if record is None:
        return RUN, ["never ran"]
    if record.fingerprint != fingerprint:
        return RUN, _changes(record.inputs, inputs)
    if not items:
        return SKIP, ["nothing to do (0 items)"]
    return RUN, [f"{len(missing)}/{len(items)} items missing"]


def recheck(stage_plan: StagePlan, state: StateView, ran: list[str]) -> tuple[str, list[str]]:
    """A stage planned SKIP, decided again once stages it reads from (`ran`) have done work in
    this run: their new outputs make its items out of date, so one run brings everything up to
    date instead of one stage per run."""
    if stage_plan.action == RUN:
        return stage_plan.action, stage_plan.reasons
    done = state.done_items(stage_plan.id, stage_plan.fingerprint)
    missing = [i for i in stage_plan.items if i not in done]
    after = f"after {', '.join(ran)} ran"
    if missing:
        return RUN, [f"{len(missing)}/{len(stage_plan.items)} items out of date {after}"]
    files_current = getattr(state, "stage_files_current", None)
    if files_current is not None and not files_current(stage_plan.id):
        return RUN, [f"{' and '.join(STAGE_FILES[stage_plan.kind])} out of date {after}"]
    return stage_plan.action, stage_plan.reasons


def make_plan(manifest: Manifest, state: StateView | None = None, force: set[str] | None = None) -> Plan:
    state = state or EmptyState()
    force = force or set()
    deps = dependency_map(manifest)
    order = graph.steps(list(manifest.stages), deps)
    fingerprints: dict[str, str] = {}
    items_of: dict[str, list[str]] = {}
    plans: list[StagePlan] = []
    for number, group in enumerate(order, 1):
        for sid in group:
            stage = manifest.stages[sid]
            upstream = {d: fingerprints[d] for d in deps[sid]}
            inputs = stage_inputs(stage, manifest, upstream)
            fingerprint = digest(inputs)
            fingerprints[sid] = fingerprint
            items = items_of[sid] = stage_items(stage, manifest, items_of)
            action, reasons = _decide(stage.kind, state.last_stage(sid), state.done_items(sid, fingerprint), fingerprint,
                                      inputs, items, sid in force or "*" in force)
            files_current = getattr(state, "stage_files_current", None)  # optional: views backed by disk
            if action == SKIP and files_current is not None and not files_current(sid):
                action, reasons = RUN, [f"{' and '.join(STAGE_FILES[stage.kind])} out of date"]
            plans.append(StagePlan(
                id=sid, kind=stage.kind, step=number, action=action, reasons=reasons, items=items,
                pods=[stage.pod] if stage.pod else [], after=deps[sid], output=stage.output,
                fingerprint=fingerprint, description=stage.description,
            ))
    pods = [
        PodPlan(id=pod.id, provider=pod.provider.type, service=pod.summary(), replicas=pod.replicas,
                keep=pod.keep, used_by=[s.id for s in manifest.stages.values() if s.pod == pod.id])
        for pod in manifest.pods.values()
    ]
    return Plan(manifest.name, manifest.file, order, plans, pods, manifest.warnings)
