"""The manifest reference in Markdown, generated from the schema (the single source of truth).

`404-run schema --format markdown` prints it; docs/manifest-reference.md is its output, and a test
fails when the two drift apart.
"""

from __future__ import annotations

import json
from typing import Any

from runner404.schema import manifest_schema

HEADER = """# Manifest reference

Generated from `schemas/manifest.schema.json` by `404-run schema --format markdown`; do not edit
by hand. Values may contain `${{ … }}` expressions (see the README).
"""


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]] | {k: v for k, v in schema.items() if k != "$ref"}
    return schema


def _type(schema: dict[str, Any], root: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return {"duration": "duration", "secret": "secret reference", "stage_kind": "stage kind"}.get(name, name)
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type(option, root) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), root)}"
    if kind == "object" and "properties" not in schema:
        return "mapping"
    return {"object": "mapping"}.get(kind, kind)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(schema: dict[str, Any], root: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    required = set(schema.get("required", ()))
    rows = ["| key | type | required | default | description |", "|---|---|---|---|---|"]
    for key, prop in schema.get("properties", {}).items():
        if key in skip:
            continue
        resolved = _resolve(prop, root)
        default = prop.get("default", resolved.get("default"))
        rows.append(f"| `{key}` | {_cell(_type(prop, root))} | {'yes' if key in required else ''} | "
                    f"{'' if default is None else _cell('`' + json.dumps(default) + '`')} | "
                    f"{_cell(prop.get('description') or resolved.get('description', ''))} |")
    return rows


def markdown() -> str:
    root = manifest_schema()
    out = [HEADER, "## Top level", "", root["description"], ""]
    out += _table(root, root, skip=("$schema",))
    sections = [("Secret reference", "secret"), ("Duration", "duration"), ("Pod", "pod"), ("Pod health", None),
                ("Prompt set", "prompt_set")]
    for title, name in sections:
        schema = _resolve(root["$defs"]["pod"]["properties"]["health"], root) if name is None else root["$defs"][name]
        out += ["", f"## {title}", "", schema.get("description", ""), ""]
        if "properties" in schema:
            out += _table(schema, root)
        elif "anyOf" in schema:
            out += [f"Type: {_type(schema, root)}."]
    provider = root["properties"]["provider"]
    provider_object = next(o for o in provider["anyOf"] if o.get("type") == "object")
    out += ["", "## Provider", "", provider["description"], ""] + _table(provider_object, root)
    out += ["", "## Stages", "", "Every stage has `uses:` (its kind) and may have `description:` and `needs:`; "
            "the other keys depend on the kind."]
    for kind in root["$defs"]["stage_kind"]["enum"]:
        schema = root["$defs"][f"stage_{kind.replace('-', '_')}"]
        out += ["", f"### `uses: {kind}`", "", schema.get("description", ""), ""]
        out += _table(schema, root, skip=("uses", "description", "needs"))
    judge_rules = next(o for o in root["$defs"]["stage_judge"]["properties"]["rules"]["anyOf"]
                       if o.get("type") == "object")
    out += ["", "### Judge rules", "", judge_rules.get("description", ""), ""] + _table(judge_rules, root)
    for section, schema in judge_rules["properties"].items():
        if "properties" in schema:
            out += ["", f"#### `rules.{section}`", "", schema.get("description", ""), ""] + _table(schema, root)
    return "\n".join(out).rstrip() + "\n"
