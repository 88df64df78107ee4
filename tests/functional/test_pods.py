"""Pods one by one: health gating (no busy loop on odd statuses) and endpoint pods."""

from __future__ import annotations

import argparse
import asyncio

import httpx
import pytest

from engine_helpers import write_modules
from runner404.pods.health import HealthTimeout, wait_healthy
from runner404.sim import health
from runner404.sim.renderer import start_renderer


def _health_server(warmup: float, status: int):
    args = argparse.Namespace(latency=0.0, capacity=0, fail_rate=0.0, fail_status=503, drop_rate=0.0, seed=0,
                              stall_rate=0.0, stall=0.0, warmup=warmup, warming_status=status)
    server = health.create_server("127.0.0.1", 0, args)
    server.start()
    return server


async def _wait(url: str, timeout: float, interval: float) -> float:
    async with httpx.AsyncClient() as client:
        return await wait_healthy(client, url, "/health", timeout, interval)


@pytest.mark.parametrize("status", [204, 202, 503])
def test_only_200_is_healthy_and_other_answers_wait_the_interval(status):
    server = _health_server(warmup=0.6, status=status)
    try:
        took = asyncio.run(_wait(server.url, timeout=10, interval=0.1))
        assert took >= 0.6
        assert server.stats.requests <= 0.6 / 0.1 + 3  # one request per interval, never a busy loop
    finally:
        server.stop()


def test_a_service_that_never_becomes_healthy_times_out_with_its_last_answer():
    server = _health_server(warmup=60, status=204)
    try:
        with pytest.raises(HealthTimeout) as caught:
            asyncio.run(_wait(server.url, timeout=1.0, interval=0.1))
        assert "/health not healthy within 1s (last: HTTP 204)" in str(caught.value)
        assert server.stats.requests <= 1.0 / 0.1 + 2
    finally:
        server.stop()


def test_an_endpoint_pod_is_used_but_never_started_or_stopped(tmp_path, cli):
    renderer = start_renderer()
    try:
        write_modules(tmp_path / "js", 2)
        (tmp_path / "m.yaml").write_text(
            "version: 1\nname: endpoint-test\npods:\n"
            f"  renderer: {{preset: renderer, url: '{renderer.url}', health: {{interval: 0.05s}}}}\n"
            "stages:\n  render: {uses: render, pod: renderer, input: js/, img_size: 32}\n")
        result = cli(["run", "m.yaml"], cwd=tmp_path)
        assert result.exit_code == 0, result.stdout
        assert len(list((tmp_path / "out/render").glob("*.png"))) == 2
        assert httpx.get(f"{renderer.url}/health").status_code == 200  # still running
    finally:
        renderer.stop()
