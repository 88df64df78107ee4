"""The state ledger: an embedded SQLite file of runs, stages, items, attempts and pods.

WAL mode and one transaction per write, so a SIGKILL at any moment leaves a consistent file.
An item is done when its row says so under the stage's current fingerprint *and* the files it
recorded still exist with their recorded sizes (a deleted output makes the item missing again).
Secrets never reach this file: stage inputs are stored with secrets by name.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner404.manifest.model import Manifest
from runner404.plan.inputs import Stat, StageInputs, StatCache, stage_files_current, stat
from runner404.plan.planner import StageRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, manifest TEXT NOT NULL, command TEXT NOT NULL, pid INTEGER,
    started REAL NOT NULL, ended REAL, status TEXT NOT NULL, exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,
    inputs TEXT NOT NULL, status TEXT NOT NULL, started REAL NOT NULL, ended REAL,
    items_total INTEGER NOT NULL DEFAULT 0, error TEXT,
    PRIMARY KEY (run_id, stage)
);
CREATE TABLE IF NOT EXISTS items (
    stage TEXT NOT NULL, fingerprint TEXT NOT NULL, item TEXT NOT NULL, status TEXT NOT NULL,
    run_id TEXT NOT NULL, outputs TEXT, reason TEXT, detail TEXT, updated REAL NOT NULL, inputs TEXT,
    PRIMARY KEY (stage, fingerprint, item)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, stage TEXT NOT NULL,
    item TEXT, attempt INTEGER NOT NULL, ok INTEGER NOT NULL, error TEXT, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pods (
    uid TEXT PRIMARY KEY, run_id TEXT NOT NULL, pod TEXT NOT NULL, provider TEXT NOT NULL,
    name TEXT NOT NULL, spec_hash TEXT NOT NULL, url TEXT, status TEXT NOT NULL, keep INTEGER NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stages_by_stage ON stages (stage, started);
CREATE INDEX IF NOT EXISTS attempts_by_item ON attempts (stage, item);
"""

DONE, FAILED = "done", "failed"


@dataclass(frozen=True)
class PodRow:
    uid: str
    run_id: str
    pod: str
    provider: str
    name: str
    spec_hash: str
    url: str | None
    status: str
    keep: bool


def new_run_id() -> str:
    """Sortable by start time (to the millisecond), unique by a random suffix."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"{int(now * 1000) % 1000:03d}-" + uuid.uuid4().hex[:6]


class Ledger:
    """One connection, used from the event loop's thread only."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path, self.readonly = path, readonly
        if readonly:  # `plan` and `status` change nothing, not even the state folder
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                      timeout=30)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        self.db.row_factory = sqlite3.Row
        if not readonly and "inputs" not in {r[1] for r in self.db.execute("PRAGMA table_info(items)")}:
            self.db.execute("ALTER TABLE items ADD COLUMN inputs TEXT")  # ledgers from 0.1.0 previews

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self.db:  # a transaction per write
            self.db.execute("BEGIN")
            self.db.execute(sql, tuple(params))

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, run_id: str, manifest: str, command: str) -> None:
        self._write("INSERT INTO runs (id, manifest, command, pid, started, status) VALUES (?,?,?,?,?,?)",
                    (run_id, manifest, command, os.getpid(), time.time(), "running"))

    def end_run(self, run_id: str, status: str, exit_code: int) -> None:
        self._write("UPDATE runs SET ended=?, status=?, exit_code=? WHERE id=?",
                    (time.time(), status, exit_code, run_id))

    def runs(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM runs ORDER BY started").fetchall()

    # -- stages ------------------------------------------------------------------------------

    def start_stage(self, run_id: str, stage: str, kind: str, fingerprint: str,
                    inputs: dict[str, Any], items_total: int) -> None:
        self._write("INSERT OR REPLACE INTO stages (run_id, stage, kind, fingerprint, inputs, status, started, "
                    "items_total) VALUES (?,?,?,?,?,?,?,?)",
                    (run_id, stage, kind, fingerprint, json.dumps(inputs, sort_keys=True), "running",
                     time.time(), items_total))

    def end_stage(self, run_id: str, stage: str, status: str, error: str | None = None) -> None:
        self._write("UPDATE stages SET status=?, ended=?, error=? WHERE run_id=? AND stage=?",
                    (status, time.time(), error, run_id, stage))

    def last_stage_row(self, stage: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM stages WHERE stage=? ORDER BY started DESC LIMIT 1",
                               (stage,)).fetchone()

    # -- items -------------------------------------------------------------------------------

    def item_done(self, run_id: str, stage: str, fingerprint: str, item: str, attempt: int,
                  outputs: dict[str, int], inputs: str | None = None) -> None:
        """Record a finished item (its output sizes and a token of its inputs) and its
        successful attempt in one transaction."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO items (stage, fingerprint, item, status, run_id, outputs, "
                            "reason, detail, updated, inputs) VALUES (?,?,?,?,?,?,NULL,NULL,?,?)",
                            (stage, fingerprint, item, DONE, run_id, json.dumps(outputs, sort_keys=True), now,
                             inputs))
            self.db.execute("INSERT INTO attempts (run_id, stage, item, attempt, ok, error, at) "
                            "VALUES (?,?,?,?,1,NULL,?)", (run_id, stage, item, attempt, now))

    def item_failed(self, run_id: str, stage: str, fingerprint: str, item: str, reason: str,
                    detail: Any = None) -> None:
        self._write("INSERT OR REPLACE INTO items (stage, fingerprint, item, status, run_id, outputs, reason, "
                    "detail, updated) VALUES (?,?,?,?,?,NULL,?,?,?)",
                    (stage, fingerprint, item, FAILED, run_id, reason,
                     None if detail is None else json.dumps(detail), time.time()))

    def attempt_failed(self, run_id: str, stage: str, item: str | None, attempt: int, error: str) -> None:
        self._write("INSERT INTO attempts (run_id, stage, item, attempt, ok, error, at) VALUES (?,?,?,?,0,?,?)",
                    (run_id, stage, item, attempt, error, time.time()))

    def items(self, stage: str, fingerprint: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM items WHERE stage=? AND fingerprint=? ORDER BY item",
                               (stage, fingerprint)).fetchall()

    def done_items(self, stage: str, fingerprint: str, base: Path,
                   inputs_current: Callable[[str, str | None], bool] | None = None,
                   stat: Stat = stat) -> frozenset[str]:
        """Items done under `fingerprint` whose recorded files still exist with their sizes and,
        given `inputs_current(item, recorded token)`, whose inputs are still those they were made
        from. One query for the stage."""
        prefix = str(base).rstrip("/") + "/"
        done = []
        for item, outputs, inputs in self.db.execute(
                "SELECT item, outputs, inputs FROM items WHERE stage=? AND fingerprint=? AND status=?",
                (stage, fingerprint, DONE)):
            for rel, size in json.loads(outputs or "{}").items():
                found = stat(rel if rel.startswith("/") else prefix + rel)
                if found is None or found[0] != size:
                    break
            else:
                if inputs_current is None or inputs_current(item, inputs):
                    done.append(item)
        return frozenset(done)

    def retoken(self, stage: str, fingerprint: str, tokens: dict[str, str]) -> None:
        """Rewrite the input tokens of done items (legacy tokens in the current form)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE items SET inputs=? WHERE stage=? AND fingerprint=? AND item=? AND status=?",
                                [(token, stage, fingerprint, item, DONE) for item, token in tokens.items()])

    def attempts(self, stage: str, item: str | None = None) -> list[sqlite3.Row]:
        if item is None:
            return self.db.execute("SELECT * FROM attempts WHERE stage=? ORDER BY id", (stage,)).fetchall()
        return self.db.execute("SELECT * FROM attempts WHERE stage=? AND item=? ORDER BY id",
                               (stage, item)).fetchall()

    # -- pods --------------------------------------------------------------------------------

    def pod_created(self, row: PodRow) -> None:
        now = time.time()
        self._write("INSERT OR REPLACE INTO pods (uid, run_id, pod, provider, name, spec_hash, url, status, keep, "
                    "created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (row.uid, row.run_id, row.pod, row.provider, row.name, row.spec_hash, row.url, row.status,
                     int(row.keep), now, now))

    def pod_update(self, uid: str, **fields: Any) -> None:
        keys = sorted(fields)
        values = [int(v) if isinstance(v, bool) else v for v in (fields[k] for k in keys)]
        self._write(f"UPDATE pods SET {', '.join(f'{k}=?' for k in keys)}, updated=? WHERE uid=?",
                    (*values, time.time(), uid))

    def pods(self, statuses: Iterable[str] | None = None) -> list[PodRow]:
        rows = self.db.execute("SELECT * FROM pods ORDER BY created").fetchall()
        wanted = set(statuses) if statuses is not None else None
        return [PodRow(r["uid"], r["run_id"], r["pod"], r["provider"], r["name"], r["spec_hash"], r["url"],
                       r["status"], bool(r["keep"]))
                for r in rows if wanted is None or r["status"] in wanted]


class LedgerState:
    """The planner's view of the ledger (runner404.plan.planner.StateView) and of the files on
    disk at one moment: make a new one for each plan, since file states are cached."""

    def __init__(self, ledger: Ledger, manifest: Manifest):
        self.ledger, self.manifest, self.base = ledger, manifest, manifest.base_dir
        self.stat: Stat = StatCache().__getitem__

    def last_stage(self, stage_id: str) -> StageRecord | None:
        row = self.ledger.last_stage_row(stage_id)
        if row is None:
            return None
        return StageRecord(row["fingerprint"], json.loads(row["inputs"]))

    def stage_files_current(self, stage_id: str) -> bool:
        """Whether files a stage writes from all its items (a judge's match) are up to date."""
        return stage_files_current(self.manifest.stages[stage_id], self.manifest, self.stat)

    def done_items(self, stage_id: str, fingerprint: str) -> frozenset[str]:
        inputs = StageInputs(self.manifest.stages[stage_id], self.manifest, self.stat)
        legacy: list[str] = []

        def current(item: str, recorded: str | None) -> bool:
            ok, old_form = inputs.matches(item, recorded)
            if old_form:
                legacy.append(item)
            return ok

        done = self.ledger.done_items(stage_id, fingerprint, self.base, current, self.stat)
        if legacy and not self.ledger.readonly:
            # a ledger from before tokens were location-independent: migrated in place, once
            self.ledger.retoken(stage_id, fingerprint, {item: inputs.token(item) for item in legacy})
        return done
