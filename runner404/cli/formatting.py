"""Text renderings of core results for the terminal (the core returns data, never text)."""

from __future__ import annotations

from runner404.plan.planner import ITEM_KINDS, Plan


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def plan_text(plan: Plan) -> str:
    run = sum(s.action == "RUN" for s in plan.stages)
    lines = [
        f"Plan for {plan.name} ({plan.file})",
        f"{len(plan.stages)} stage{'s' * (len(plan.stages) != 1)} in {len(plan.steps)} "
        f"step{'s' * (len(plan.steps) != 1)}, {run} to run; {len(plan.pods)} pod{'s' * (len(plan.pods) != 1)}",
    ]
    rows = []
    for stage in plan.stages:
        items = f"{len(stage.items)} item{'s' * (len(stage.items) != 1)}" if stage.kind in ITEM_KINDS else ""
        pods = ", ".join(stage.pods)
        rows.append([stage.action, stage.id, stage.kind, items, f"pod {pods}" if pods else "", "; ".join(stage.reasons)])
    table = iter(_table(rows, "    "))
    for number, group in enumerate(plan.steps, 1):
        lines.append("")
        lines.append(f"  step {number}" + (f" ({len(group)} in parallel)" if len(group) > 1 else ""))
        lines.extend(next(table) for _ in group)
    if plan.pods:
        lines += ["", "  pods"]
        lines += _table([[p.id, p.provider + (f" x{p.replicas}" if p.replicas > 1 else ""),
                          p.service, ("kept; " if p.keep else "") + "used by " + (", ".join(p.used_by) or "no stage")]
                         for p in plan.pods], "    ")
    return "\n".join(lines)


def run_summary(result, manifest_file: str) -> str:
    """The table printed when a run ends, and where its log is."""
    rows = []
    for o in result.outcomes:
        counts = f"{o.done} done" + (f", {len(o.failed)} failed" if o.failed else "") if o.status not in (
            "skipped", "blocked", "interrupted") else ""
        rows.append([o.id, o.kind, o.status, counts, f"{o.error} (see {result.log})" if o.error else ""])
    lines = [f"run {result.run_id} of {manifest_file}"]
    lines += _table(rows)
    for o in result.outcomes:
        lines += [f"  {o.id}: {line}" for line in o.summary]
        for item, reason in sorted(o.failed.items())[:20]:
            lines.append(f"  {o.id}/{item}: {reason}")
        if len(o.failed) > 20:
            lines.append(f"  {o.id}: … and {len(o.failed) - 20} more failed items (404-run status)")
    lines += [f"  teardown: {error}" for error in result.teardown_errors]
    verdict = {0: "done", 1: "failed", 3: "failed (provider)", 4: "done with failed items",
               130: "interrupted"}.get(result.exit_code, "failed")
    lines.append(f"{verdict}; log: {result.log}")
    lines += [f"open {artifact}" for o in result.outcomes for artifact in o.artifacts]
    return "\n".join(lines)


def status_text(stages) -> str:
    import datetime

    rows = []
    for s in stages:
        when = datetime.datetime.fromtimestamp(s.started).strftime("%Y-%m-%d %H:%M") if s.started else ""
        items = f"{s.items_done}/{s.items_total} done" if s.run_id else ""
        if s.failed:
            items += f", {len(s.failed)} failed"
        rows.append([s.id, s.kind, s.status, items, s.run_id or "", when])
    lines = _table([["stage", "kind", "last run", "items", "run", "started"]] + rows, "")
    for s in stages:
        lines += [f"  {s.id}/{item}: {reason}" for item, reason in sorted(s.failed.items())]
        if s.error:
            lines.append(f"  {s.id}: {s.error}")
    return "\n".join(lines)
