"""Writing a report's files from a judge output folder (used by the stage and `404-run report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner404.engine import atomic
from runner404.report import data
from runner404.report.data import Sources

FILES = {"json": "report.json", "markdown": "summary.md", "html": "report.html", "junit": "junit.xml"}


def sources_from_match(judge_dir: Path, base: Path) -> Sources:
    """Image folders from the judge's match.json (paths relative to the manifest's folder)."""
    try:
        match = json.loads((judge_dir / "match.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        match = {}
    side = lambda key: (base / match[key]).resolve() if match.get(key) else None  # noqa: E731
    return Sources(judge_dir, side("left_dir"), side("right_dir"), {})


def write_report(sources: Sources, out: Path, *, win_margin: float, title: str, provenance: dict[str, Any],
                 failures: list[dict[str, str]], formats: list[str] | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Build the report and write the chosen formats into `out`; returns (report, files written)."""
    records = data.read_records(sources.judge_dir)
    report = data.build(records, win_margin=win_margin, provenance=provenance, failures=failures, title=title)
    for duel in report["duels"]:  # prompt images named by the records when the caller knows none
        sources.prompt_images.setdefault(duel["stem"], _prompt_source(duel["prompt_url"], sources))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in formats or list(FILES):
        path = out / FILES[kind]
        if kind == "json":
            text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        elif kind == "markdown":
            from runner404.report.markdown import summary

            text = summary(report)
        elif kind == "junit":
            from runner404.report.junit import junit

            text = junit(report)
        else:
            from runner404.report.html import page

            text = page(report, sources)
        atomic.write_text(path, text)
        written.append(path)
    return report, written


def _prompt_source(url: str | None, sources: Sources) -> Path | str | None:
    if not url:
        return None
    if url.startswith(("http://", "https://")):
        return url
    return None
