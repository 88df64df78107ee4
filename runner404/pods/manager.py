"""Pods for one run: started on first use, shared by the stages that name them, torn down at the end.

A pod is started once even when several stages ask for it at the same time; its replicas start
concurrently. A workload left by an earlier run is reused when its spec hash matches and it is
still healthy. Teardown stops every workload this run holds unless it is kept, and confirms it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from runner404.engine.ledger import Ledger
from runner404.errors import UsageError
from runner404.manifest.model import Manifest, Pod
from runner404.plan.fingerprint import digest
from runner404.pods.provider import PodContext, Provider, Workload
from runner404.secret import Secret

ACTIVE = ("creating", "starting", "running")


def replica_names(pod: Pod) -> list[str]:
    return [pod.name] if pod.replicas == 1 else [f"{pod.name}-{i}" for i in range(pod.replicas)]


class PodManager:
    def __init__(self, manifest: Manifest, ledger: Ledger, run_id: str, log_dir: Path,
                 event: Callable[..., None], environ: Mapping[str, str], targon_url: str | None = None):
        self.manifest, self.ledger, self.run_id = manifest, ledger, run_id
        self.environ, self.targon_url = environ, targon_url
        self.ctx = PodContext(run_id, ledger, manifest.base_dir, log_dir, event)
        self.event = event
        self.held: dict[str, list[Workload]] = {}
        self.will_keep: set[str] = set()  # pods a `pod` stage of this run keeps: started as kept
        self._locks: dict[str, asyncio.Lock] = {}
        self._providers: dict[tuple, Provider] = {}

    # -- providers ---------------------------------------------------------------------------

    def targon_base_url(self, pod: Pod) -> str:
        from runner404.pods.targon import DEFAULT_BASE_URL

        return (self.targon_url or self.environ.get("TARGON_API_URL") or pod.provider.base_url
                or DEFAULT_BASE_URL).rstrip("/")

    def provider(self, pod: Pod) -> Provider:
        kind = pod.provider.type
        if kind == "targon":
            key = pod.provider.api_key
            secret = key.reveal() if isinstance(key, Secret) else str(key or "")
            if not secret:
                raise UsageError(f"pod '{pod.id}': the targon provider has an empty api_key")
            cache_key = (kind, self.targon_base_url(pod), key.names if isinstance(key, Secret) else "literal")
            if cache_key not in self._providers:
                from runner404.pods.targon import TargonProvider

                self._providers[cache_key] = TargonProvider(secret, cache_key[1])
            return self._providers[cache_key]
        if (kind,) not in self._providers:
            if kind == "local":
                from runner404.pods.local import LocalProvider

                self._providers[(kind,)] = LocalProvider()
            else:
                from runner404.pods.endpoint import EndpointProvider

                self._providers[(kind,)] = EndpointProvider()
        return self._providers[(kind,)]

    # -- acquiring ---------------------------------------------------------------------------

    async def acquire(self, pod_id: str) -> list[Workload]:
        """The running replicas of a pod, starting them if this run does not hold them yet."""
        lock = self._locks.setdefault(pod_id, asyncio.Lock())
        async with lock:
            if pod_id not in self.held:
                self.held[pod_id] = await self._start(self.manifest.pods[pod_id])
            return self.held[pod_id]

    async def _start(self, pod: Pod) -> list[Workload]:
        if pod.id in self.will_keep and not pod.keep:
            pod = dataclasses.replace(pod, keep=True)
        provider = self.provider(pod)
        spec_hash = digest(pod.spec())
        self.event("pod_starting", pod=pod.id, provider=pod.provider.type, replicas=pod.replicas)
        tasks = [asyncio.ensure_future(self._replica(provider, pod, i, name, spec_hash))
                 for i, name in enumerate(replica_names(pod))]
        try:
            workloads = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            started = [w for w in done if isinstance(w, Workload)]
            await asyncio.shield(self._stop_all(started))
            raise
        for workload in workloads:
            self.event("pod_ready", pod=pod.id, replica=workload.replica, url=workload.url,
                       uid=workload.uid, reused=not workload.created)
        return workloads

    async def _replica(self, provider: Provider, pod: Pod, replica: int, name: str, spec_hash: str) -> Workload:
        for row in self.ledger.pods(ACTIVE):
            if (row.pod, row.name, row.spec_hash, row.provider) == (pod.id, name, spec_hash, pod.provider.type) \
                    and row.run_id != self.run_id and not self._run_alive(row.run_id):
                found = await provider.reuse(row, pod, self.ctx)
                if found is not None:
                    found.replica = replica
                    self.ledger.pod_update(row.uid, run_id=self.run_id)
                    return found
        return await provider.start(pod, replica, name, spec_hash, self.ctx)

    def _run_alive(self, run_id: str) -> bool:
        row = self.ledger.db.execute("SELECT pid, status FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None or row["status"] != "running" or not row["pid"]:
            return False
        try:
            os.kill(row["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return row["pid"] != os.getpid()

    def keep(self, pod_id: str) -> None:
        """Leave this pod running after the run (the `pod` stage kind)."""
        for workload in self.held.get(pod_id, []):
            workload.keep = True
            if workload.created or workload.provider != "endpoint":
                self.ledger.pod_update(workload.uid, keep=True)

    # -- teardown ----------------------------------------------------------------------------

    async def cleanup_stale(self, needed: set[str]) -> None:
        """Stop unkept workloads left by runs that died (SIGKILL, power loss), except those this
        run may reuse (same pod, same spec)."""
        for row in self.ledger.pods(ACTIVE):
            if row.keep or row.run_id == self.run_id or self._run_alive(row.run_id):
                continue
            pod = self.manifest.pods.get(row.pod)
            if pod is None or pod.provider.type != row.provider:
                continue  # no provider settings to reach it with; `stop-pods owned: true` can
            if row.pod in needed and row.spec_hash == digest(pod.spec()):
                continue
            self.event("pod_stale", pod=row.pod, uid=row.uid, run=row.run_id)
            workload = Workload(row.pod, 0, row.uid, row.name, row.url or "", row.provider, created=True)
            errors = await self._stop_all([workload])
            for error in errors:
                self.event("pod_stop_failed", pod=row.pod, uid=row.uid, error=error)

    async def _stop_all(self, workloads: list[Workload]) -> list[str]:
        errors: list[str] = []

        async def stop(workload: Workload) -> None:
            pod = self.manifest.pods.get(workload.pod)
            try:
                provider = self.provider(pod) if pod else None
                if provider is not None:
                    await provider.stop(workload, self.ctx)
                    self.event("pod_stopped", pod=workload.pod, replica=workload.replica, uid=workload.uid)
            except Exception as exc:  # report every failed deletion, keep deleting the others
                errors.append(f"pod '{workload.pod}' ({workload.uid}): {exc}")

        await asyncio.gather(*(stop(w) for w in workloads if w.provider != "endpoint"))
        return errors

    async def teardown(self) -> list[str]:
        """Stop every held workload that is not kept; returns the errors (empty when all went)."""
        workloads = [w for ws in self.held.values() for w in ws if not w.keep]
        self.held = {pid: [w for w in ws if w.keep] for pid, ws in self.held.items()}
        errors = await self._stop_all(workloads)
        for provider in self._providers.values():
            close = getattr(provider, "aclose", None)
            if close:
                await close()
        await self.ctx.aclose()
        return errors
