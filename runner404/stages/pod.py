"""`pod`: start a pod, keep it running after the run, and report its URL."""

from __future__ import annotations

from runner404.engine.context import StageContext

DEFAULT_CONCURRENCY = 1


async def run(ctx: StageContext) -> None:
    pod_id = ctx.stage.pod or ""
    workloads = await ctx.workloads(pod_id)
    ctx.pods.keep(pod_id)
    for workload in workloads:
        ctx.summary.append(f"{workload.name}: {workload.url}")
        ctx.event("pod_kept", stage=ctx.id, pod=pod_id, url=workload.url, uid=workload.uid)
    if ctx.todo:
        ctx.item_done(pod_id, [])
