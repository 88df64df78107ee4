"""`list-all --table`: the revealed commitments as a rich table on stdout (classic-cli §3.3)."""

from __future__ import annotations

from typing import Any

from runner404.cli.environment import Environment

DASH = "—"


def shorten(value: str | None) -> str | None:
    """First 6 … last 4 characters of an address."""
    if not value:
        return None
    return value if len(value) <= 11 else f"{value[:6]}…{value[-4:]}"


def _cell(value: Any, style: str = ""):
    from rich.text import Text

    if value is None or value == "":
        return Text(DASH, style="dim")
    return Text(str(value), style=style)


PIPE_WIDTH = 160  # piped output is not cut to a terminal's width: room for every column


def _width(env: Environment) -> int | None:
    return None if env.stdout_isatty else PIPE_WIDTH


def print_table(env: Environment, round_number: int, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=env.stdout, force_terminal=bool(env.stdout_isatty), no_color="NO_COLOR" in env.environ,
                      width=_width(env), highlight=False, soft_wrap=False)
    table = Table(title=f"Revealed commitments — round {round_number}")
    table.add_column("Hotkey", no_wrap=True)
    table.add_column("Hash", no_wrap=True)
    table.add_column("Repo", max_width=32, overflow="ellipsis", no_wrap=True)
    table.add_column("CDN", max_width=36, overflow="ellipsis", no_wrap=True)
    table.add_column("Coldkey", no_wrap=True)
    table.add_column("Locked ρ", justify="right", no_wrap=True)
    table.add_column("Req ρ", justify="right", no_wrap=True)
    table.add_column("OK", justify="center", no_wrap=True)
    counts = {True: 0, False: 0, None: 0}
    for row in rows:
        sufficient = row.get("lock_sufficient")
        counts[sufficient] += 1
        colour = "green" if sufficient else "red"
        locked = None if row.get("locked_rho") is None else f"{row['locked_rho']:.2f}"
        required = None if row.get("required_rho") is None else f"{row['required_rho']:.0f}"
        ok = Text("?", style="dim") if sufficient is None else Text("✓" if sufficient else "✗", style=colour)
        table.add_row(_cell(shorten(row.get("hotkey"))), _cell((row.get("commit_hash") or "")[:10]),
                      _cell(row.get("repo")), _cell(row.get("cdn_url")), _cell(shorten(row.get("coldkey"))),
                      _cell(locked, colour if sufficient is not None else ""), _cell(required), ok)
    console.print(table)
    console.print(f"{len(rows)} commitments  {counts[True]} sufficient  {counts[False]} insufficient  "
                  f"{counts[None]} unknown", markup=False)
