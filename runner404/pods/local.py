"""`local` pods: a child process with PORT in its environment, its output in the run's log folder.

Children die with the runner (PR_SET_PDEATHSIG on Linux) unless the pod is kept, and are stopped
as a whole process group on teardown: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from runner404.engine.ledger import PodRow
from runner404.errors import InfraError
from runner404.manifest.model import Pod
from runner404.pods.health import wait_healthy
from runner404.pods.provider import PodContext, Workload

GRACE = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    """Running, not merely unreaped: the pod of a killed runner stays a zombie until init reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def command_line(pod: Pod) -> list[str]:
    """The pod's command plus its args; `python` means this runner's own interpreter."""
    argv = list(pod.command or ()) + list(pod.args)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


class LocalProvider:
    name = "local"

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}

    async def start(self, pod: Pod, replica: int, name: str, spec_hash: str, ctx: PodContext) -> Workload:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = ctx.log_dir / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **pod.revealed_env(), "PORT": str(port)}
        argv = command_line(pod)
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    cwd=ctx.workdir,
                    start_new_session=True, preexec_fn=None if pod.keep else _die_with_parent,
                )
            except OSError as exc:
                raise InfraError(f"pod '{pod.id}': cannot start {argv[0]}: {exc.strerror}; see {log_path}") from None
        uid = f"local-{process.pid}"
        self.processes[uid] = process
        ctx.ledger.pod_created(PodRow(uid, ctx.run_id, pod.id, self.name, name, spec_hash, url, "starting", pod.keep))
        ctx.event("pod_created", pod=pod.id, replica=replica, uid=uid, log=str(log_path))

        def alive() -> str | None:
            code = process.poll()
            return None if code is None else f"pod '{pod.id}' exited with code {code} (see {log_path})"

        workload = Workload(pod.id, replica, uid, name, url, self.name, created=True, keep=pod.keep)
        try:
            await wait_healthy(ctx.http, url, pod.health.path, pod.health.timeout, pod.health.interval, alive)
        except BaseException:
            await self.stop(workload, ctx)
            raise
        ctx.ledger.pod_update(uid, status="running")
        return workload

    async def stop(self, workload: Workload, ctx: PodContext) -> None:
        process = self.processes.pop(workload.uid, None)
        pid = process.pid if process else int(workload.uid.removeprefix("local-"))
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline:
            if (process.poll() is not None) if process else not _alive(pid):
                break
            await asyncio.sleep(0.05)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if process:
                process.wait(timeout=GRACE)
        ctx.ledger.pod_update(workload.uid, status="deleted")

    async def reuse(self, row: Any, pod: Pod, ctx: PodContext) -> Workload | None:
        """A kept local pod from an earlier run, if its process still answers."""
        pid = int(row.uid.removeprefix("local-"))
        if not row.url or not _alive(pid):
            ctx.ledger.pod_update(row.uid, status="deleted")  # it died with its run
            return None
        try:
            await wait_healthy(ctx.http, row.url, pod.health.path, timeout=2 * pod.health.interval + 1,
                               interval=pod.health.interval)
        except InfraError:
            return None
        return Workload(pod.id, 0, row.uid, row.name, row.url, self.name, created=False, keep=True)
