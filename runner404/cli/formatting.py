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
