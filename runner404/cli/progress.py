"""Showing a run as it happens: plain lines (pipes, CI), a live table (terminals), or NDJSON."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from runner404.cli.environment import Environment


@dataclass
class _StageView:
    kind: str
    total: int = 0
    todo: int = 0
    done: int = 0
    failed: int = 0
    status: str = "waiting"
    started: float | None = None
    last_print: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def eta(self) -> str:
        if not self.started or not self.done or self.done >= self.todo:
            return ""
        left = (time.monotonic() - self.started) / self.done * (self.todo - self.done - self.failed)
        return f"ETA {left:.0f}s" if left < 120 else f"ETA {left / 60:.0f}m"


class Tracker:
    """Folds events into per-stage counts (shared by the plain and the live display)."""

    def __init__(self) -> None:
        self.stages: dict[str, _StageView] = {}

    def update(self, record: dict[str, Any]) -> _StageView | None:
        event, stage = record["event"], record.get("stage")
        if event == "run_started":
            for s in record["stages"]:
                self.stages[s["id"]] = _StageView(s["kind"], total=s["items"], reasons=s["reasons"])
            return None
        view = self.stages.get(stage) if stage else None
        if view is None:
            return None
        if event == "stage_started":
            view.status, view.todo, view.started = "running", record["todo"], time.monotonic()
        elif event == "item_done":
            view.done += 1
        elif event == "item_failed":
            view.failed += 1
        elif event in ("stage_finished", "stage_skipped", "stage_blocked"):
            view.status = record.get("status") or event.removeprefix("stage_")
        return view


class PlainProgress:
    """One line per meaningful event on stderr; item progress at most every few seconds."""

    EVERY = 5.0

    def __init__(self, env: Environment):
        self.env, self.tracker = env, Tracker()

    def __call__(self, record: dict[str, Any]) -> None:
        view = self.tracker.update(record)
        event = record["event"]
        line = None
        if event == "run_started":
            runs = sum(s["action"] == "RUN" for s in record["stages"])
            line = f"run {record['run']}: {len(record['stages'])} stages, {runs} to run"
        elif event == "pod_starting":
            line = f"pod {record['pod']}: starting ({record['provider']}, {record['replicas']} replica(s))"
        elif event == "pod_ready":
            how = "ready" if not record.get("reused") else "using" if record["uid"] == record["url"] else "reused"
            line = f"pod {record['pod']}: {how} at {record['url']}"
        elif event == "pod_stopped":
            line = f"pod {record['pod']}: stopped"
        elif event == "pod_stale":
            line = f"pod {record['pod']}: deleting {record['uid']} left by run {record['run']}"
        elif event == "stage_started":
            line = f"{record['stage']}: started, {record['todo']}/{record['items']} items to do ({'; '.join(record['reasons'])})"
        elif event == "stage_skipped":
            line = f"{record['stage']}: skipped ({'; '.join(record['reasons'])})"
        elif event == "stage_blocked":
            line = f"{record['stage']}: blocked ({', '.join(record['because'])} failed)"
        elif event == "stage_finished":
            line = f"{record['stage']}: {record['status']}, {record['done']} done, {record['failed']} failed in {record['seconds']:.1f}s"
            if record.get("error"):
                line += f": {record['error']}"
        elif event == "item_failed":
            line = f"{record['stage']}: item {record['item']} failed: {record['reason']}"
        elif event == "attempt_failed" and record.get("retry_in") is not None:
            line = (f"{record['stage']}: {record['item'] or 'stage'} attempt {record['attempt']} failed "
                    f"({record['error']}); retrying in {record['retry_in']:.1f}s")
        elif event == "batch_progress" and record.get("total"):
            now = time.monotonic()
            if view is not None and now - view.last_print >= self.EVERY:
                view.last_print = now
                line = f"{record['stage']}: generating {record['progress']}/{record['total']} on {record['url']}"
        elif event == "chain_note":
            line = f"{record['stage']}: {record['level']}: {record['text']}"
        elif event == "item_done" and view is not None:
            now = time.monotonic()
            if now - view.last_print >= self.EVERY and view.done < view.todo:
                view.last_print = now
                line = f"{record['stage']}: {view.done}/{view.todo} done {view.eta()}".rstrip()
        if line:
            self.env.err(line)


class JsonProgress:
    """`--progress json`: every event as one JSON line on stdout."""

    def __init__(self, env: Environment):
        self.env = env

    def __call__(self, record: dict[str, Any]) -> None:
        self.env.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.env.stdout.flush()


class LiveProgress:
    """A live table per stage (done/total/failed/ETA) on a terminal, with notable lines above it."""

    def __init__(self, env: Environment):
        from rich.console import Console
        from rich.live import Live

        self.env = env
        self.tracker = Tracker()
        self.console = Console(file=env.stderr, no_color="NO_COLOR" in env.environ)
        self.live = Live(console=self.console, refresh_per_second=4, transient=True)
        self.lines = PlainProgress(_ConsoleLines(self.console))  # notable events, above the table
        self.lines.EVERY = float("inf")  # the table shows item progress

    def __call__(self, record: dict[str, Any]) -> None:
        self.tracker.update(record)
        if record["event"] == "run_started":
            self.live.start()
        if record["event"] != "item_done":
            self.lines(record)
        self.live.update(self._table())
        if record["event"] == "run_finished":
            self.live.stop()

    def _table(self):
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("stage", "kind", "status", "done", "failed", "eta"):
            table.add_column(column)
        for sid, view in self.tracker.stages.items():
            table.add_row(sid, view.kind, view.status, f"{view.done}/{view.todo or view.total}",
                          str(view.failed), view.eta())
        return table


class _ConsoleLines:
    """Lets PlainProgress print above the live table."""

    def __init__(self, console):
        self.console = console

    def err(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)
