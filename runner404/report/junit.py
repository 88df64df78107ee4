"""junit.xml: one test case per duel; a duel lost by the side under test (right) fails."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr


def junit(report: dict[str, Any]) -> str:
    duels = report["duels"]
    failures = [d for d in duels if d["winner"] == "left"]
    errors = [d for d in duels if d["winner"] == "skipped"]
    match = report["match"]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites name={quoteattr(report["title"])} tests="{len(duels)}" failures="{len(failures)}" '
             f'errors="{len(errors)}">',
             f'  <testsuite name="duels" tests="{len(duels)}" failures="{len(failures)}" errors="{len(errors)}">',
             "    <properties>",
             f'      <property name="score" value="{match["score"]}"/>',
             f'      <property name="margin" value="{match["margin"]:.6f}"/>',
             f'      <property name="qualifies" value="{str(match["qualifies"]).lower()}"/>',
             "    </properties>"]
    for duel in duels:
        name = quoteattr(str(duel["stem"]))
        decided = f'{duel["winner"]}: {duel["decided_by"]}'
        if duel["winner"] == "left":
            lines.append(f'    <testcase classname="duel" name={name}>')
            lines.append(f'      <failure message={quoteattr(decided)}>{_text(duel["issues"])}</failure>')
            lines.append("    </testcase>")
        elif duel["winner"] == "skipped":
            lines.append(f'    <testcase classname="duel" name={name}>')
            lines.append(f'      <error message={quoteattr(str(duel["decided_by"]))}/>')
            lines.append("    </testcase>")
        else:
            lines.append(f'    <testcase classname="duel" name={name}/>')
    lines += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def _text(value: Any) -> str:
    return str(value or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
