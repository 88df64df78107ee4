"""summary.md: the match at a glance, ready to paste into a pull request."""

from __future__ import annotations

from typing import Any


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def summary(report: dict[str, Any]) -> str:
    match = report["match"]
    verdict = "qualifies" if match["qualifies"] else "does not qualify"
    lines = [
        f"## {report['title']}",
        "",
        f"**Right {verdict}** against left: score **{match['score']:+d}** over {match['duels']} duels, "
        f"margin **{match['margin']:+.3f}** (win margin {match['win_margin']:g}).",
        "",
        "| right wins | left wins | draws | skipped |",
        "|---:|---:|---:|---:|",
        f"| {match['right']} | {match['left']} | {match['draws']} | {match['skipped']} |",
        "",
        "Decided by: " + ", ".join(f"{stage} {count}" for stage, count in match["by_stage"].items() if count) + ".",
    ]
    lost = [d for d in report["duels"] if d["winner"] in ("left", "skipped")]
    if lost:
        lines += ["", "<details><summary>Duels not won by right</summary>", "",
                  "| stem | winner | decided by | issues |", "|---|---|---|---|"]
        lines += [f"| {_cell(d['stem'])} | {_cell(d['winner'])} | {_cell(d['decided_by'])} | {_cell(d['issues'])} |"
                  for d in lost]
        lines += ["", "</details>"]
    failures = report["failures"]["by_stage_and_reason"]
    if failures:
        lines += ["", "| stage | failure | items |", "|---|---|---:|"]
        lines += [f"| {_cell(f['stage'])} | {_cell(f['reason'])} | {f['count']} |" for f in failures]
    prov = report["provenance"]
    facts = [f"runner404 {prov['runner_version']}"]
    facts += [f"{label} {value}" for label, value in (("manifest", prov.get("manifest_sha256", "")[:12]),
                                                       ("rules", prov.get("rules_preset")), ("seed", prov.get("seed")))
              if value not in (None, "")]
    lines += ["", f"<sub>{' · '.join(facts)}</sub>", ""]
    return "\n".join(lines)
