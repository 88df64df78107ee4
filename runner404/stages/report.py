"""`report`: report.json, summary.md, report.html and junit.xml from a judge stage's records.

Provenance: the manifest's hash (secrets redacted), the runner version, the pods' images, the
seeds, the judge rules and the hash of its prompt templates. Failures: every failed item of the
manifest's stages, by stage and reason. `fail_below` makes the stage fail (exit 1) when the
margin is below it, and keeps failing on reruns, so CI can gate on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner404.engine.context import StageContext
from runner404.engine.ledger import Ledger
from runner404.errors import Runner404Error
from runner404.manifest.model import Manifest, Stage
from runner404.plan.fingerprint import digest
from runner404.report.data import Sources
from runner404.report.write import sources_from_match, write_report
from runner404.secret import redact

DEFAULT_CONCURRENCY = 1


def judge_stage_of(manifest: Manifest, stage: Stage) -> Stage | None:
    """The judge stage whose output this report reads, if it is in the manifest."""
    target = manifest.resolve_path(stage.params["input"])
    for other in manifest.stages.values():
        if other.kind == "judge" and other.output and manifest.resolve_path(other.output) == target:
            return other
    return None


def failures(manifest: Manifest, ledger: Ledger | None) -> list[dict[str, str]]:
    """Failed items of the manifest's stages (their last run's fingerprint)."""
    found = []
    for stage in manifest.stages.values():
        row = ledger.last_stage_row(stage.id) if ledger else None
        if row is not None:
            found += [{"stage": stage.id, "item": r["item"], "reason": r["reason"]}
                      for r in ledger.items(stage.id, row["fingerprint"]) if r["status"] == "failed"]
    return found


def provenance(manifest: Manifest, judge: Stage | None) -> dict[str, Any]:
    pods = {pod.id: pod.image or " ".join(pod.command or ()) or pod.url for pod in manifest.pods.values()}
    seeds = {s.id: s.params.get("seed", manifest.prompt_sets[s.prompts].seed if s.prompts in manifest.prompt_sets
                                 else None)
             for s in manifest.stages.values() if s.kind in ("generate", "judge")}
    found: dict[str, Any] = {"manifest": manifest.file, "manifest_sha256": digest(redact(manifest.data)),
                             "pods": pods, "seeds": seeds}
    if judge is not None:
        from runner404.judge.messages import Templates

        rules = judge.params.get("rules", "404-cli")
        folder = judge.params.get("templates")
        found.update({
            "judge_stage": judge.id, "seed": judge.params.get("seed"),
            "rules_preset": rules if isinstance(rules, str) else rules.get("preset", "404-cli"),
            "rules_overrides": {} if isinstance(rules, str) else {k: v for k, v in rules.items() if k != "preset"},
            "templates_sha256": Templates(manifest.resolve_path(folder) if folder else None).digest(),
        })
    return found


def report_stage(manifest: Manifest, stage: Stage, ledger: Ledger | None) -> tuple[dict[str, Any], list[Path]]:
    """Write one report stage's files; returns (report, files written)."""
    params = stage.params
    judge_dir = manifest.resolve_path(params["input"])
    judge = judge_stage_of(manifest, stage)
    if judge is not None:
        prompt_set = manifest.prompt_sets.get(judge.prompts or "")
        images: dict[str, Path | str] = {p.stem: prompt_set.local_image(p) or p.image_url
                                         for p in (prompt_set.prompts if prompt_set else ())}
        sources = Sources(judge_dir, manifest.resolve_path(judge.params["left"]),
                          manifest.resolve_path(judge.params["right"]), images)
    else:
        sources = sources_from_match(judge_dir, manifest.base_dir)
    return write_report(sources, manifest.resolve_path(stage.output or f"out/{stage.id}"),
                        win_margin=float(params.get("win_margin", 0.07)),
                        title=params.get("title") or f"{manifest.name}: {stage.id}",
                        provenance=provenance(manifest, judge), failures=failures(manifest, ledger),
                        formats=params.get("formats"))


def check_gate(stage: Stage, report: dict[str, Any]) -> None:
    fail_below = stage.params.get("fail_below")
    margin = report["match"]["margin"]
    if fail_below is not None and margin < float(fail_below):
        raise Runner404Error(f"margin {margin:+.3f} is below fail_below {float(fail_below):+.3f}")


async def run(ctx: StageContext) -> None:
    report, written = report_stage(ctx.manifest, ctx.stage, ctx.ledger)
    match = report["match"]
    ctx.summary.append(f"margin {match['margin']:+.3f} over {match['duels']} duels: "
                       f"{'qualifies' if match['qualifies'] else 'does not qualify'} at {match['win_margin']:g}")
    check_gate(ctx.stage, report)
    if ctx.todo:
        ctx.item_done(ctx.id, written)
