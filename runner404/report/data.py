"""The report's data (report.json, validated by schemas/report.schema.json): provenance, duels,
the match against `win_margin`, counts by deciding stage and failures by stage and reason."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner404 import __version__
from runner404.errors import Runner404Error
from runner404.judge.match import deciding_stage, score_match

SCHEMA_VERSION = 1


@dataclass
class Sources:
    """Where a judge's records and the images they refer to are."""

    judge_dir: Path
    left_dir: Path | None
    right_dir: Path | None
    prompt_images: dict[str, Path | str]  # stem -> local path or URL


def read_records(judge_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((judge_dir / "duels.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Runner404Error(f"no duels.json in {judge_dir}: run the judge stage first") from None
    except (OSError, ValueError) as exc:
        raise Runner404Error(f"cannot read {judge_dir / 'duels.json'}: {exc}") from None
    return list(data.get("results", [])) if isinstance(data, dict) else list(data)


def duel_row(record: dict[str, Any]) -> dict[str, Any]:
    detail = record.get("detail") or {}
    return {
        "stem": record.get("stem"),
        "prompt_url": record.get("prompt_url"),
        "winner": record.get("winner"),
        "decided_by": detail.get("decided_by") or detail.get("reason") or detail.get("error"),
        "stage": deciding_stage(record),
        "issues": detail.get("issues", ""),
    }


def build(records: list[dict[str, Any]], *, win_margin: float, provenance: dict[str, Any],
          failures: list[dict[str, str]], title: str) -> dict[str, Any]:
    score = score_match(records, win_margin)
    by_reason = Counter((f["stage"], f["reason"]) for f in failures)
    return {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "provenance": {"runner_version": __version__, **provenance},
        "match": score.as_dict(),
        "duels": [duel_row(r) for r in records],
        "failures": {
            "items": failures,
            "by_stage_and_reason": [{"stage": s, "reason": r, "count": n} for (s, r), n in sorted(by_reason.items())],
        },
    }
