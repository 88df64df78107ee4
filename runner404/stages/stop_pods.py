"""`stop-pods`: delete Targon workloads by exact names, by name prefix, or all this project created.

Workloads already stopped or deleted are skipped; every deletion is confirmed against the API and
reported, and the stage fails when any deletion failed (classic-cli D13).
"""

from __future__ import annotations

from runner404.engine.context import StageContext
from runner404.errors import InfraError
from runner404.pods.targon import delete_and_confirm
from runner404.pods.targon_api import TargonClient
from runner404.secret import Secret

DEFAULT_CONCURRENCY = 1


def _select(workloads, names: set[str], prefix: str | None, owned: set[str]):
    for workload in workloads:
        if workload.name in names or (prefix and workload.name.startswith(prefix)) or workload.uid in owned:
            yield workload


async def run(ctx: StageContext) -> None:
    provider = ctx.manifest.data.get("provider")
    provider = {"type": provider} if isinstance(provider, str) else provider
    key = provider.get("api_key")
    api_key = key.reveal() if isinstance(key, Secret) else str(key)
    base_url = (ctx.pods.targon_url or ctx.pods.environ.get("TARGON_API_URL") or provider.get("base_url")
                or "https://api.targon.com")
    names = set(ctx.params.get("names") or ())
    prefix = ctx.params.get("prefix")
    owned = {row.uid for row in ctx.ledger.pods() if row.provider == "targon"} if ctx.params.get("owned") else set()
    errors = []
    async with TargonClient(api_key, base_url) as client:
        for workload in _select(await client.list(), names, prefix, owned):
            if workload.status in ("stopped", "deleted", "terminated", "terminating"):
                ctx.summary.append(f"{workload.name} ({workload.uid}): already {workload.status}")
                continue
            try:
                await delete_and_confirm(client, workload.uid, poll=0.5)
            except InfraError as exc:
                errors.append(f"{workload.name} ({workload.uid}): {exc}")
                ctx.summary.append(f"{workload.name} ({workload.uid}): delete failed: {exc}")
                continue
            ctx.ledger.pod_update(workload.uid, status="deleted")
            ctx.summary.append(f"{workload.name} ({workload.uid}): deleted")
            ctx.event("pod_deleted", stage=ctx.id, name=workload.name, uid=workload.uid)
    if errors:
        raise InfraError(f"{len(errors)} deletion(s) failed: " + "; ".join(errors))
    if not any(line.endswith(": deleted") for line in ctx.summary):
        ctx.summary.append("no matching workloads")
    if ctx.todo:
        ctx.item_done(ctx.id, [])
