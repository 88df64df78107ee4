"""`endpoint` pods: a service that is already running; only health-checked, never started or stopped."""

from __future__ import annotations

from typing import Any

from runner404.manifest.model import Pod
from runner404.pods.health import wait_healthy
from runner404.pods.provider import PodContext, Workload


class EndpointProvider:
    name = "endpoint"

    async def start(self, pod: Pod, replica: int, name: str, spec_hash: str, ctx: PodContext) -> Workload:
        url = (pod.url or "").rstrip("/")
        ctx.event("pod_health", pod=pod.id, replica=replica, url=url)
        await wait_healthy(ctx.http, url, pod.health.path, pod.health.timeout, pod.health.interval)
        return Workload(pod.id, replica, url, name, url, self.name, created=False, keep=True)

    async def stop(self, workload: Workload, ctx: PodContext) -> None:
        return None

    async def reuse(self, row: Any, pod: Pod, ctx: PodContext) -> Workload | None:
        return None
