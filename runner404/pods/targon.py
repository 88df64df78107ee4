"""`targon` pods: workloads created through the Targon REST API.

The uid from the create call is written to the ledger before anything else happens (classic-cli
D10), pods are tracked by uid, never picked by name (D11), a pod that misses its URL or health
window is deleted, and teardown polls until the workload is really gone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runner404.engine.ledger import PodRow
from runner404.errors import InfraError
from runner404.manifest.model import Pod
from runner404.pods.health import wait_healthy
from runner404.pods.provider import PodContext, Workload
from runner404.pods.targon_api import TargonClient, build_create_request

DEFAULT_BASE_URL = "https://api.targon.com"
URL_TIMEOUT = 1800.0  # the validators' visibility window
GONE_TIMEOUT = 300.0


async def delete_and_confirm(client: TargonClient, uid: str, poll: float, timeout: float = GONE_TIMEOUT) -> None:
    """Delete a workload and poll until the API no longer has it (or reports it deleted)."""
    await client.delete(uid)
    deadline = time.monotonic() + timeout
    while True:
        state = await client.state(uid)
        if state is None or state.status == "deleted":
            return
        if time.monotonic() > deadline:
            raise InfraError(f"workload {uid} still {state.status} {timeout:g}s after delete")
        await asyncio.sleep(poll)


class TargonProvider:
    name = "targon"

    def __init__(self, api_key: str, base_url: str, poll: float = 2.0):
        self.client = TargonClient(api_key, base_url)
        self.poll = poll

    async def aclose(self) -> None:
        await self.client.aclose()

    async def start(self, pod: Pod, replica: int, name: str, spec_hash: str, ctx: PodContext) -> Workload:
        request = build_create_request(name, pod.image, pod.resource, pod.port, pod.args, pod.revealed_env())
        uid = await self.client.create(request)
        ctx.ledger.pod_created(PodRow(uid, ctx.run_id, pod.id, self.name, name, spec_hash, None, "creating", pod.keep))
        ctx.event("pod_created", pod=pod.id, replica=replica, uid=uid)
        workload = Workload(pod.id, replica, uid, name, "", self.name, created=True, keep=pod.keep)
        try:
            await self.client.deploy(uid)
            workload.url = await self._wait_url(uid, pod, ctx)
            ctx.ledger.pod_update(uid, url=workload.url, status="starting")
            ctx.event("pod_health", pod=pod.id, replica=replica, url=workload.url)
            await wait_healthy(ctx.http, workload.url, pod.health.path, pod.health.timeout, pod.health.interval,
                               on_wait=lambda t, last: ctx.event("pod_waiting", pod=pod.id, replica=replica,
                                                                 seconds=round(t, 1), last=last))
        except BaseException:
            await asyncio.shield(self.stop(workload, ctx))  # never leave a half-started pod behind
            raise
        ctx.ledger.pod_update(uid, status="running")
        return workload

    async def _wait_url(self, uid: str, pod: Pod, ctx: PodContext) -> str:
        deadline = time.monotonic() + URL_TIMEOUT
        while True:
            state = await self.client.state(uid)
            if state is None:
                raise InfraError(f"pod '{pod.id}': workload {uid} disappeared while starting")
            if state.terminal:
                raise InfraError(f"pod '{pod.id}': workload {uid} is {state.status}"
                                 + (f": {state.message}" if state.message else ""))
            if state.url:
                return state.url.rstrip("/")
            if time.monotonic() > deadline:
                raise InfraError(f"pod '{pod.id}': workload {uid} got no URL within {URL_TIMEOUT:g}s")
            await asyncio.sleep(min(self.poll, pod.health.interval))

    async def stop(self, workload: Workload, ctx: PodContext) -> None:
        ctx.event("pod_stopping", pod=workload.pod, replica=workload.replica, uid=workload.uid)
        await delete_and_confirm(self.client, workload.uid, min(self.poll, 1.0))
        ctx.ledger.pod_update(workload.uid, status="deleted")

    async def reuse(self, row: Any, pod: Pod, ctx: PodContext) -> Workload | None:
        state = await self.client.state(row.uid)
        if state is None or not state.running or not state.url:
            if state is None or state.terminal:
                ctx.ledger.pod_update(row.uid, status="deleted")
            return None
        try:
            await wait_healthy(ctx.http, state.url, pod.health.path, timeout=2 * pod.health.interval + 1,
                               interval=pod.health.interval)
        except InfraError:
            return None
        return Workload(pod.id, 0, row.uid, row.name, state.url.rstrip("/"), self.name, created=False, keep=row.keep)
