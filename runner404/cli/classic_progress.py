"""Progress of a classic command on stderr, by `-v` level.

- default: the plain progress lines of `404-run`, the judge's classic stage lines, chain notes
  (warnings as `WARNING: ...`) and failures;
- `-v`: also batch, pod and VLM details, every failed attempt and every item done;
- `-vv` and more: also every engine event as a `debug:` JSON line.
"""

from __future__ import annotations

import json
from typing import Any

from runner404.cli.environment import Environment
from runner404.cli.progress import PlainProgress


def _detail(record: dict[str, Any]) -> str | None:
    """The `-v` line of an event, if it has one."""
    event = record["event"]
    if event == "batch_started":
        return f"Submitting batch with {record['stems']} prompts to {record['url']}..."
    if event == "batch_partial":
        return f"Batch accepted {record['accepted']}/{record['total']} prompts"
    if event == "batch_progress":
        if record.get("progress") is None:
            return "Generation in progress..."
        return f"Generation progress: {record['progress']}/{record['total']}"
    if event == "pod_created":
        return f"pod {record['pod']}: created {record['uid']}"
    if event == "pod_health":
        return f"pod {record['pod']}: waiting for {record['url']} to be healthy"
    if event == "pod_waiting":
        return f"pod {record['pod']}: still waiting after {record['seconds']}s ({record['last']})"
    if event == "pod_stopping":
        return f"pod {record['pod']}: deleting {record['uid']}"
    if event == "vlm_warning":
        return f"WARNING: {record['line']}"
    if event == "attempt_failed" and record.get("retry_in") is None:
        return f"{record['stage']}: {record.get('item') or 'stage'} attempt {record['attempt']} failed: {record['error']}"
    if event == "item_done":
        return f"{record['stage']}: {record['item']} done"
    return None


# events whose -v line replaces the plain display's periodic summary of them
SUMMED_UP = {"batch_progress", "item_done"}


class ClassicProgress:
    def __init__(self, env: Environment, verbosity: int = 0):
        self.env, self.verbosity = env, verbosity
        self.plain = PlainProgress(env)
        self.events: list[dict[str, Any]] = []
        self.said: set[str] = set()  # lines shown, so the stage summary does not repeat them

    def say(self, line: str) -> None:
        self.said.add(line)
        self.env.err(line)

    def __call__(self, record: dict[str, Any]) -> None:
        self.events.append(record)
        event = record["event"]
        if self.verbosity >= 2:
            self.env.err("debug: " + json.dumps(record, ensure_ascii=False, default=str))
        if event == "duel_log":
            self.say(record["line"])
        elif event == "pod_deleted":  # stop-pods: each deletion as it is confirmed
            self.say(f"{record['name']} ({record['uid']}): deleted")
        elif event == "chain_note":  # the classic wording, instead of the plain "<stage>: <level>: ..."
            prefix = "WARNING: " if record.get("level") == "warning" else ""
            self.say(prefix + record["text"])
        elif self.verbosity >= 1 and (line := _detail(record)):
            self.say(line)
            if event not in SUMMED_UP:
                self.plain(record)
        else:
            self.plain(record)
