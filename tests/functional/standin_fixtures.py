"""The fixtures of a stand-in's protocol tests: one shared server, a client of it, and extras."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest


def standin_fixtures(start: Callable[..., object]):
    """`server, client, started = standin_fixtures(start_renderer)` in a test module: `server` is
    started once per module, `client` talks to it, `started(**knobs)` starts extra stand-ins
    that are stopped after the test."""

    @pytest.fixture(scope="module")
    def server() -> Iterator:
        srv = start()
        yield srv
        srv.stop()

    @pytest.fixture(scope="module")
    def client(server) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            yield c

    @pytest.fixture
    def started() -> Iterator[Callable[..., object]]:
        servers = []

        def start_one(**knobs):
            srv = start(**knobs)
            servers.append(srv)
            return srv

        yield start_one
        for srv in servers:
            srv.stop()

    return server, client, started
