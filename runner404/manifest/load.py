"""YAML loading that keeps the file, line and column of every key and value.

The tree is built from PyYAML's node graph rather than its constructor so that duplicate keys
can be reported, keys stay the text the user wrote (`on:` is not `True`), and alias bombs and
self-referencing aliases are stopped instead of expanded without end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner404.diagnostics import Diagnostic, Mark
from runner404.errors import ManifestError

JsonPath = tuple  # keys and indexes from the root

MAX_NODES = 100_000  # after alias expansion; a real manifest has a few hundred
MAX_DEPTH = 64
MAX_BYTES = 4 * 1024 * 1024  # a real manifest is a few KiB; parsing is pure Python
_CONFLICT = re.compile(r"^(<{7}|={7}|>{7}|\|{7})(?:\s|$)")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_STANDARD_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", _TIMESTAMP_TAG,
}


@dataclass
class Document:
    """A loaded YAML tree plus the positions of its values and mapping keys."""

    file: str
    data: Any
    marks: dict[JsonPath, Mark] = field(default_factory=dict)
    key_marks: dict[JsonPath, Mark] = field(default_factory=dict)

    def mark(self, path: JsonPath) -> Mark:
        """Position of the value at `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path) or Mark(self.file, 1, 1)

    def key_mark(self, path: JsonPath) -> Mark:
        """Position of the key naming the value at `path` (falls back to the value)."""
        return self.key_marks.get(tuple(path)) or self.mark(path)


def read_manifest(path: Path, display: str | None = None) -> Document:
    display = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError([Diagnostic(display, 1, 1, "file not found")]) from None
    except IsADirectoryError:
        raise ManifestError([Diagnostic(display, 1, 1, "is a directory, not a manifest file")]) from None
    except OSError as exc:
        raise ManifestError([Diagnostic(display, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return load_yaml(raw, display)


def load_yaml(raw: bytes, file: str) -> Document:
    if len(raw) > MAX_BYTES:
        raise ManifestError([Diagnostic(file, 1, 1, f"the file is {len(raw) / 1024 / 1024:.1f} MiB; manifests are "
                                                    f"limited to {MAX_BYTES // 1024 // 1024} MiB")])
    text = _decode(raw, file)
    lines = text.splitlines()
    _check_conflict_markers(lines, file)
    builder = _Builder(file, lines)
    try:
        _check_depth(text, builder)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and mark.line >= len(lines) and exc.context_mark is not None:
            mark = exc.context_mark  # "… but got '<stream end>'": point where the construct began
        raise ManifestError([builder.diag(mark, _yaml_message(exc))]) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"control character #x{code:04x} is not allowed; manifests must be printable text"
        raise ManifestError([Diagnostic(file, line, col, message, snippet=_line(lines, line))]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every YAML error above carries a mark
        raise ManifestError([Diagnostic(file, 1, 1, str(exc))]) from None
    if node is None:
        raise ManifestError([Diagnostic(file, 1, 1, "the manifest is empty")])
    doc = Document(file, None)
    doc.data = builder.build(node, (), doc, 0)
    if builder.errors:
        raise ManifestError(builder.errors)
    return doc


def _check_depth(text: str, builder: _Builder) -> None:
    """PyYAML composes nodes recursively: stop deep nesting on the (flat) event stream first."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ManifestError([builder.diag(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ManifestError([Diagnostic(file, 1, 1, "the file is UTF-16; save it as UTF-8")])
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + bom
        line_start = raw.rfind(b"\n", 0, start) + 1
        line = raw.count(b"\n", 0, start) + 1
        col = len(raw[max(line_start, bom):start].decode("utf-8", "replace")) + 1  # in characters
        snippet = raw.splitlines()[line - 1].decode("utf-8", "replace") if raw else None
        byte = raw[start:start + 1].hex()
        raise ManifestError([Diagnostic(file, line, col, f"not valid UTF-8 (byte 0x{byte}); save the file as UTF-8", snippet=snippet)]) from None


def _check_conflict_markers(lines: list[str], file: str) -> None:
    errors = [
        Diagnostic(file, no, 1, f"merge-conflict marker {m.group(1)!r}; resolve the conflict first",
                   snippet=line, end_col=8)
        for no, line in enumerate(lines, 1)
        if (m := _CONFLICT.match(line))
    ]
    if errors:
        raise ManifestError(errors)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    message = exc.problem or "invalid YAML"
    if exc.context and exc.problem_mark is not None:
        message = f"{exc.context}, {message}"
    if "'\\t'" in message:
        message += " (YAML does not allow tabs for indentation)"
    return f"YAML syntax error: {message}"


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _line(lines: list[str], line: int) -> str | None:
    return lines[line - 1] if 0 < line <= len(lines) else None


class _Builder:
    """Turns a YAML node graph into plain Python values, recording positions."""

    def __init__(self, file: str, lines: list[str]):
        self.file = file
        self.lines = lines
        self.errors: list[Diagnostic] = []
        self.count = 0
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used

    def mark(self, node: yaml.Node) -> Mark:
        start, end = node.start_mark, node.end_mark
        end_col = end.column + 1 if end.line == start.line and end.column > start.column else None
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
            end_col = None  # a block collection spans lines; point at its start only
        return Mark(self.file, start.line + 1, start.column + 1, end_col, _line(self.lines, start.line + 1))

    def diag(self, ymark: yaml.Mark | None, message: str) -> Diagnostic:
        if ymark is None:
            return Diagnostic(self.file, 1, 1, message)
        return Diagnostic(self.file, ymark.line + 1, ymark.column + 1, message,
                          snippet=_line(self.lines, ymark.line + 1))

    def fail(self, node: yaml.Node, message: str) -> None:
        self.errors.append(Diagnostic.at(self.mark(node), message))

    def build(self, node: yaml.Node, path: JsonPath, doc: Document, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.fail(node, f"the manifest expands to more than {MAX_NODES} values (alias bomb?)")
            return None
        if depth > MAX_DEPTH:
            self.fail(node, f"nested more than {MAX_DEPTH} levels deep (recursive alias?)")
            return None
        doc.marks[path] = self.mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), doc, depth + 1) for i, item in enumerate(node.value)]
        return self.mapping(node, path, doc, depth)

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _TIMESTAMP_TAG:
            return node.value  # dates stay the text written; JSON has no date type
        if node.tag not in _STANDARD_TAGS:
            self.fail(node, f"unsupported YAML tag {node.tag!r}")
            return None
        return self.scalars.construct_object(node)

    def key(self, node: yaml.Node) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, "mapping keys must be plain text, not lists or mappings")
            return None
        return node.value

    def mapping(self, node: yaml.MappingNode, path: JsonPath, doc: Document, depth: int) -> dict:
        result: dict[str, Any] = {}
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self.merge_sources(value_node))
                continue
            key = self.key(key_node)
            if key is None:
                continue
            if key in result:
                first = doc.key_marks[path + (key,)]
                self.fail(key_node, f"duplicate key '{key}' (first defined at line {first.line})")
                continue
            doc.key_marks[path + (key,)] = self.mark(key_node)
            result[key] = self.build(value_node, path + (key,), doc, depth + 1)
        for key_node, value_node in merged:  # `<<:` entries never override explicit keys
            key = self.key(key_node)
            if key is not None and key not in result:
                doc.key_marks[path + (key,)] = self.mark(key_node)
                result[key] = self.build(value_node, path + (key,), doc, depth + 1)
        return result

    def merge_sources(self, node: yaml.Node, depth: int = 0) -> list[tuple[yaml.Node, yaml.Node]]:
        """The entries a `<<:` brings in, in priority order: each source's own keys first,
        then what that source merges itself."""
        if depth > MAX_DEPTH:
            self.fail(node, f"merge keys nested more than {MAX_DEPTH} levels deep (recursive alias?)")
            return []
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        pairs = []
        seen: set[int] = set()
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.fail(source, "a merge key '<<' takes a mapping or a list of mappings")
                continue
            if id(source) in seen:  # the same anchor merged twice adds nothing
                continue
            seen.add(id(source))
            pairs.extend((k, v) for k, v in source.value if k.tag != _MERGE_TAG)
            for key, value in source.value:
                if key.tag == _MERGE_TAG:
                    pairs.extend(self.merge_sources(value, depth + 1))
            self.count += len(source.value)  # merging expands like aliases do: it counts toward the cap
            if self.count > MAX_NODES:
                self.fail(node, f"the manifest expands to more than {MAX_NODES} values (merge-key bomb?)")
                return []
        return pairs
