"""report.html: one self-contained page (thumbnails as data URLs, inline CSS/JS, no network)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from runner404.report.data import Sources

THUMB = 256  # px, longest side
STAGE_COLOURS = {"S1": "#4c78a8", "S2": "#f58518", "S3": "#54a24b", "S4": "#e45756", "no preview": "#9d9d9d",
                 "skipped": "#bab0ac", "other": "#b279a2"}


def thumbnail(source: Path | str | None, size: int = THUMB) -> str | None:
    """A JPEG data URL of the image reduced to `size` px, or None when it cannot be read."""
    if source is None:
        return None
    from PIL import Image, UnidentifiedImageError  # the one path that needs Pillow

    try:
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            import httpx

            data = httpx.get(source, timeout=10.0, follow_redirects=True).raise_for_status().content
        else:
            data = Path(source).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=80, optimize=True)
    except (OSError, UnidentifiedImageError, ValueError, Exception):  # a broken image is shown as missing
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def chart(by_stage: dict[str, int], width: int = 480, bar: int = 22) -> dict[str, Any]:
    """Bars of outcomes by deciding stage, as data for an inline SVG."""
    rows = [(stage, count) for stage, count in by_stage.items() if count]
    top = max((count for _, count in rows), default=1)
    return {"width": width, "height": bar * len(rows) + 8, "bars": [
        {"label": stage, "count": count, "y": 4 + i * bar, "w": max(2, int((width - 140) * count / top)),
         "colour": STAGE_COLOURS.get(stage, "#888")} for i, (stage, count) in enumerate(rows)]}


def page(report: dict[str, Any], sources: Sources) -> str:
    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(["html", "j2"]))
    duels = []
    for duel in report["duels"]:
        stem = duel["stem"]
        duels.append({**duel,
                      "prompt": thumbnail(sources.prompt_images.get(stem)),
                      "left": thumbnail(sources.left_dir / stem / "grid.png" if sources.left_dir else None),
                      "right": thumbnail(sources.right_dir / stem / "grid.png" if sources.right_dir else None)})
    return env.get_template("report.html.j2").render(report=report, duels=duels,
                                                     chart=chart(report["match"]["by_stage"]))
