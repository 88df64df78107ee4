"""The run's event stream: every event goes to the run log (JSON lines) and to listeners
(the terminal display, `--progress json`). Events carry names, counts and reasons, never secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Listener = Callable[[dict[str, Any]], None]


class EventLog:
    def __init__(self, path: Path | None, listeners: list[Listener] | None = None):
        self.path = path
        self.listeners = list(listeners or [])
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"t": round(time.time(), 3), "event": event, **fields}
        if self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self._file.flush()
        for listener in self.listeners:
            listener(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
