"""Render view sets (reference: protocols.md §2.9) shared by the render stage and the judge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class View:
    name: str
    theta: float
    phi: float


def _views(*specs: tuple[str, float, float]) -> tuple[View, ...]:
    return tuple(View(*spec) for spec in specs)


FRONT_LEFT, FRONT_RIGHT, FRONT_ABOVE = ("front_left", 30, 0), ("front_right", 330, 0), ("front_above", 0, -30)
SIDES = (("right", 90, 0), ("back", 180, 0), ("left", 270, 0), ("top_down", 0, -90))

VIEW_SETS: dict[str, dict[str, tuple[View, ...]]] = {
    # the classic 404-cli renderer: `front` where production has `front_below`
    "404-cli": {
        "white": _views(("front", 0, 0), FRONT_LEFT, FRONT_RIGHT, FRONT_ABOVE, *SIDES),
        "gray": _views(("front", 0, 0), FRONT_LEFT, FRONT_RIGHT, FRONT_ABOVE),
    },
    # production validators
    "validator": {
        "white": _views(FRONT_LEFT, FRONT_RIGHT, ("front_below", 0, 15), FRONT_ABOVE, *SIDES),
        "gray": _views(FRONT_LEFT, FRONT_RIGHT, ("front_below", 0, 15), FRONT_ABOVE),
    },
}
BACKGROUND = {"white": "ffffff", "gray": "808080"}
GRID_SIZE = 2 * 518 + 5  # /render/grid with no query: 2x2 tiles of 518 px and a 5 px gap


def view_sets(spec: Any) -> dict[str, tuple[View, ...]]:
    """The `views:` parameter of a render stage: a preset name or explicit white/gray lists."""
    if isinstance(spec, dict):
        return {kind: tuple(View(v["name"], v["theta"], v["phi"]) for v in spec[kind]) for kind in ("white", "gray")}
    return VIEW_SETS[spec or "404-cli"]


def stem_files(sets: dict[str, tuple[View, ...]]) -> list[str]:
    """Every file a rendered stem folder holds, relative to it."""
    return ["grid.png"] + [f"{kind}/{v.name}.png" for kind, views in sets.items() for v in views]
