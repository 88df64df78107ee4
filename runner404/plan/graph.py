"""The stage dependency graph: cycles, execution steps, and text / mermaid / dot drawings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycle(nodes: Iterable[str], deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a] (a needs b needs ... needs a), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in nodes}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = GREY
        stack.append(node)
        for dep in deps.get(node, ()):
            if color.get(dep) == GREY:
                return stack[stack.index(dep):] + [dep]
            if color.get(dep) == WHITE:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = BLACK
        return None

    for node in list(color):
        if color[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def steps(nodes: list[str], deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Stages grouped by depth: every stage of a step can run in parallel (acyclic graph)."""
    depth: dict[str, int] = {}

    def level(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((level(d) for d in deps.get(node, ())), default=-1)
        return depth[node]

    grouped: dict[int, list[str]] = {}
    for node in nodes:  # keeps manifest order inside a step
        grouped.setdefault(level(node), []).append(node)
    return [grouped[k] for k in sorted(grouped)]


def to_mermaid(nodes: list[str], labels: Mapping[str, str], deps: Mapping[str, Iterable[str]]) -> str:
    ids = {n: f"s{i}" for i, n in enumerate(nodes)}  # stage ids may hold '-', which mermaid dislikes
    lines = ["flowchart LR"]
    lines += [f'  {ids[n]}["{n}<br/>{labels[n]}"]' for n in nodes]
    lines += [f"  {ids[d]} --> {ids[n]}" for n in nodes for d in deps.get(n, ())]
    return "\n".join(lines)


def to_dot(nodes: list[str], labels: Mapping[str, str], deps: Mapping[str, Iterable[str]]) -> str:
    lines = ["digraph stages {", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f'  "{n}" [label="{n}\\n{labels[n]}"];' for n in nodes]
    lines += [f'  "{d}" -> "{n}";' for n in nodes for d in deps.get(n, ())]
    lines.append("}")
    return "\n".join(lines)


def to_text(nodes: list[str], labels: Mapping[str, str], deps: Mapping[str, Iterable[str]]) -> str:
    order = steps(nodes, deps)
    width = max(len(n) for n in nodes)
    kind_width = max(len(labels[n]) for n in nodes)
    lines = []
    for number, group in enumerate(order, 1):
        lines.append(f"step {number}")
        for n in group:
            after = ", ".join(deps.get(n, ()))
            line = f"  {n:<{width}}  {labels[n]:<{kind_width}}" + (f"  after {after}" if after else "")
            lines.append(line.rstrip())
    return "\n".join(lines)
