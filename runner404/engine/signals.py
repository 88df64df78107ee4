"""Ctrl-C: the first stops scheduling and lets the run clean up; the second exits at once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runner404.errors import ExitCode

T = TypeVar("T")


def run_interruptible(work: Callable[[], Awaitable[T]], on_signal: Callable[[int], None]) -> T:
    """Run `work()` on a fresh event loop. SIGINT/SIGTERM #1 cancels it (it cleans up in its
    `finally`); #2 exits the process immediately with 130. `on_signal(count)` is told first."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        count = 0

        def handle() -> None:
            nonlocal count
            count += 1
            on_signal(count)
            if count == 1:
                task.cancel()
            else:
                os._exit(ExitCode.INTERRUPTED)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handle)
        try:
            return await work()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
