"""VLM response models, lenient reply parsing and neutral fallbacks (judge.md §4, §5).

The five response models are plain JSON schemas shaped like the ones the upstream judges send
(pydantic's `model_json_schema()` of `PenaltyResponse`, `PromptChecklist`, `VerificationResult`,
`SideGuardVerdict` and `IssuesSummary`), so a vLLM server constrains its output the same way.
`parse_reply` is the "parse-or-repair" of §4 and returns a plain dict holding exactly the
model's fields; `ReplyError` means no candidate validated.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

FAILURE_MARKER = "JSON_PARSE_FAILED"
CHECKLIST_CATEGORIES = ("count", "shape", "presence", "material_color")


class ReplyError(ValueError):
    """No candidate of a VLM reply validated against the response schema (judge.md §4)."""


def _string(title: str) -> dict[str, Any]:
    return {"title": title, "type": "string"}


def _enum(title: str, values: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(values), "title": title, "type": "string"}


def _model(title: str, properties: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$defs": defs} if defs else {}
    schema.update({"properties": properties, "required": list(properties), "title": title, "type": "object"})
    return schema


@functools.lru_cache(maxsize=16)  # one object per bounds, so its validator is built once
def checklist_schema(min_features: int = 4, max_features: int = 7) -> dict[str, Any]:
    """`PromptChecklist`: main_object and 4-7 features (judge.md §5)."""
    item = _model("ChecklistItem", {"description": _string("Description"),
                                    "category": _enum("Category", CHECKLIST_CATEGORIES)})
    features = {"items": {"$ref": "#/$defs/ChecklistItem"}, "maxItems": max_features,
                "minItems": min_features, "title": "Features", "type": "array"}
    return _model("PromptChecklist", {"main_object": _string("Main Object"), "features": features},
                  {"ChecklistItem": item})


SCHEMAS: dict[str, dict[str, Any]] = {
    "Penalty": _model("PenaltyResponse", {
        "penalty_1": {"title": "Penalty 1", "type": "integer"},
        "penalty_2": {"title": "Penalty 2", "type": "integer"},
        "issues": _string("Issues"),
    }),
    "Checklist": checklist_schema(),
    "Verification": _model("VerificationResult", {
        "checks": {"items": {"$ref": "#/$defs/VerifyItem"}, "title": "Checks", "type": "array"},
        "main_object_correct": {"title": "Main Object Correct", "type": "boolean"},
    }, {"VerifyItem": _model("VerifyItem", {
        "feature": _string("Feature"),
        "match": _enum("Match", ("yes", "partial", "no")),
        "note": _string("Note"),
    })}),
    "SideGuard": _model("SideGuardVerdict", {
        "verdict": _enum("Verdict", ("ok", "garbage")),
        "reason": _string("Reason"),
    }),
    "Issues": _model("IssuesSummary", {"issues": _string("Issues")}),
}

# judge.md §4 "Neutral fallbacks"; Checklist and Verification have none (the call raises).
FALLBACKS: dict[str, dict[str, Any]] = {
    "Penalty": {"penalty_1": 5, "penalty_2": 5, "issues": FAILURE_MARKER},
    "SideGuard": {"verdict": "ok", "reason": FAILURE_MARKER},
    "Issues": {"issues": ""},
}


def schema_of(schema: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A response model's JSON schema, by name (`Penalty`, ...) or given as is."""
    if isinstance(schema, str):
        try:
            return SCHEMAS[schema]
        except KeyError:
            raise ValueError(f"unknown response model {schema!r}") from None
    return schema


def fallback_for(schema: str) -> dict[str, Any] | None:
    """A fresh copy of the neutral reply of a response model, or None when it has none."""
    neutral = FALLBACKS.get(schema)
    return dict(neutral) if neutral is not None else None


def is_json_failed(reply: Mapping[str, Any]) -> bool:
    """A Penalty reply is "JSON failed" when its issues equal the marker (judge.md §7.1)."""
    return reply.get("issues") == FAILURE_MARKER


# ---------------------------------------------------------------------------------------------
# Parse-or-repair (judge.md §4)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_OUTER_BRACES = re.compile(r"\{.*\}", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def candidates(text: str) -> list[str]:
    """Texts to try, in order, de-duplicated: the stripped text, the first fenced block, the
    span from the first `{` to the last `}`."""
    found = [text.strip()]
    fence = _FENCE.search(text)
    if fence:
        found.append(fence.group(1).strip())
    braces = _OUTER_BRACES.search(text)
    if braces:
        found.append(braces.group(0).strip())
    return [c for c in dict.fromkeys(found) if c]


def _integer_fields(schema: Mapping[str, Any]) -> list[str]:
    return [name for name, prop in schema.get("properties", {}).items() if prop.get("type") == "integer"]


def _coerce_integers(value: Any, fields: list[str]) -> Any:
    """Top-level integer fields holding a non-int become `int(round(float(v)))` (round half
    to even: "3.5" -> 4, 2.5 -> 2); values that do not convert are left to fail validation."""
    if not isinstance(value, dict):
        return value
    for name in fields:
        if name in value and not isinstance(value[name], int):  # booleans are ints: they fail validation
            try:
                value[name] = int(round(float(value[name])))
            except (TypeError, ValueError, OverflowError):
                pass
    return value


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return root["$defs"][ref[len("#/$defs/"):]]
    return schema


def _project(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """Keep only the fields a model declares (extra keys are ignored, like pydantic does)."""
    schema = _resolve(schema, root)
    if schema.get("type") == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        return {name: _project(value[name], properties[name], root) for name in properties if name in value}
    if schema.get("type") == "array" and isinstance(value, list):
        return [_project(item, schema.get("items", {}), root) for item in value]
    return value


_VALIDATORS: dict[int, tuple[Mapping[str, Any], Draft202012Validator]] = {}


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    """One validator per schema object (building one costs more than validating a reply); the
    schema is kept with it, so its id is not reused while cached."""
    found = _VALIDATORS.get(id(schema))
    if found is None or found[0] is not schema:
        if len(_VALIDATORS) >= 64:
            _VALIDATORS.pop(next(iter(_VALIDATORS)))
        found = _VALIDATORS[id(schema)] = (schema, Draft202012Validator(schema))
    return found[1]


def _validated(value: Any, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not _validator(schema).is_valid(value):
        return None
    return _project(value, schema, schema)


def _try(text: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return _validated(_coerce_integers(value, _integer_fields(schema)), schema)


def parse_reply(text: str | None, schema: str | Mapping[str, Any]) -> dict[str, Any]:
    """The reply as a dict of the response model's fields, or ReplyError (judge.md §4).

    Tries the whole text, then each candidate as is and with trailing commas before `}`/`]`
    removed; integer fields are coerced (round half to even) before validation. Penalties are
    not clamped to 0-10."""
    schema = schema_of(schema)
    text = text or ""
    if not text:
        raise ReplyError("Unparseable VLM response: ''")
    tries = [text]
    for candidate in candidates(text):
        tries += [candidate, _TRAILING_COMMA.sub(r"\1", candidate)]
    for attempt in dict.fromkeys(tries):
        parsed = _try(attempt, schema)
        if parsed is not None:
            return parsed
    raise ReplyError(f"Unparseable VLM response: {text[:200]!r}")
