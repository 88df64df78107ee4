"""Match scoring from duel records (judge.md §10).

score = Σ(+1 right, −1 left, 0 draw or skipped); margin = score / number of duels, every duel
in the denominator (draws, missing previews and skipped duels too; the skipped count is
reported alongside, since production never publishes a skipped duel). Positive margins favour
the right side (image-dir-2, the challenger); margin ≥ win_margin (0.07) means "right qualifies
against left".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WIN_MARGIN = 0.07
STAGE_GROUPS = ("S1", "S2", "S3", "S4", "no preview", "skipped")
_POINTS = {"right": 1, "left": -1}


def records_of(duels: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of a `duels.json` document (`{"results": [...]}`) or a plain list."""
    if isinstance(duels, Mapping):
        return list(duels["results"])
    return list(duels)


def _winner(record: Mapping[str, Any]) -> str:
    return str(record.get("winner", "")).lower()


def deciding_stage(record: Mapping[str, Any]) -> str:
    """The record's deciding stage: the first token of `decided_by` (S1, S2, S3, S4 — a step-down
    counts as S4), `no preview` for a missing-preview duel, `skipped` for a failed duel."""
    if _winner(record) == "skipped":
        return "skipped"
    detail = record.get("detail") or {}
    decided_by = detail.get("decided_by")
    if isinstance(decided_by, str) and decided_by.strip():
        return decided_by.split()[0]
    if "reason" in detail:
        return "no preview"
    return "other"


@dataclass(frozen=True)
class MatchScore:
    duels: int
    left: int
    right: int
    draws: int
    skipped: int
    score: int
    margin: float
    win_margin: float = WIN_MARGIN
    by_stage: Mapping[str, int] = field(default_factory=dict)

    @property
    def qualifies(self) -> bool:
        """Right qualifies against left (margin ≥ win_margin)."""
        return self.margin >= self.win_margin

    @property
    def verdict(self) -> str:
        return "right qualifies against left" if self.qualifies else "right does not qualify against left"

    def as_dict(self) -> dict[str, Any]:
        return {"duels": self.duels, "left": self.left, "right": self.right, "draws": self.draws,
                "skipped": self.skipped, "score": self.score, "margin": self.margin, "win_margin": self.win_margin,
                "qualifies": self.qualifies, "verdict": self.verdict, "by_stage": dict(self.by_stage)}


def score_match(duels: Mapping[str, Any] | Iterable[Mapping[str, Any]], win_margin: float = WIN_MARGIN) -> MatchScore:
    """Score, margin, verdict and counts by deciding stage of a set of duel records."""
    records = records_of(duels)
    winners = [_winner(record) for record in records]
    score = sum(_POINTS.get(winner, 0) for winner in winners)
    by_stage = dict.fromkeys(STAGE_GROUPS, 0)
    for record in records:
        stage = deciding_stage(record)
        by_stage[stage] = by_stage.get(stage, 0) + 1
    return MatchScore(
        duels=len(records),
        left=winners.count("left"),
        right=winners.count("right"),
        draws=winners.count("draw"),
        skipped=winners.count("skipped"),
        score=score,
        margin=score / len(records) if records else 0.0,
        win_margin=win_margin,
        by_stage=by_stage,
    )
