"""Static checks and picture features of generated three.js modules: runner404.sim.threejs."""

from __future__ import annotations

import pytest

from runner404.sim.threejs import (
    LITERAL_BUDGET,
    MAX_FILE_BYTES,
    check_module,
    empty_scene_metrics,
    module_features,
    scan,
)

VALID = ("export default function generate(THREE) { const g = new THREE.Group(); "
         "const m = new THREE.Mesh(new THREE.BoxGeometry(0.5,0.5,0.5), "
         "new THREE.MeshStandardMaterial({color: 0xcc3322})); g.add(m); return g; }")


def module(body: str) -> str:
    """A module whose generate() runs `body` and returns a Mesh."""
    return ("export default function generate(THREE) {\n" + body +
            "\n  return new THREE.Mesh(new THREE.BoxGeometry(0.2, 0.2, 0.2));\n}\n")


def rules(source: str) -> list[str]:
    return [f["rule"] for f in check_module(source)]


def only(source: str) -> dict:
    failures = check_module(source)
    assert len(failures) == 1, failures
    return failures[0]


# -- passing modules ------------------------------------------------------------------------

def test_valid_fixture_passes():
    assert check_module(VALID) == []


@pytest.mark.parametrize("source", [
    "export default (THREE) => new THREE.Mesh();",
    "export default THREE => { return new THREE.Points(); };",
    "export default function (THREE) { return new THREE.LineSegments(); }",
    module("const windowSize = 2; const myDate = 1; const Dates = []; const $window = 0; const fetched = 1;"),
    module("// window.fetch(document) Math.random()\n/* eval(Function) */ const label = 'window fetch Date';"),
    module("const o = {window: 1, fetch: 2}; const v = o.window + o.fetch + o.process;"),
    module("const s = `no ${'window'} here`; const re = /fetch|document['\"]/g; const half = 4 / 2 / 1;"),
    module("const m = Math.max(1, 2); const r = Math.round(0.5); const mr = THREE.MathUtils.clamp(1, 0, 2);"),
], ids=["arrow", "arrow-no-parens", "anonymous", "similar-names", "comments-and-strings",
        "member-and-key", "template-and-regex", "math"])
def test_passing_modules(source):
    assert check_module(source) == []


def test_size_limit_is_one_mebibyte():
    head = module("")
    at_limit = head + "//" + "x" * (MAX_FILE_BYTES - len(head) - 2)
    assert len(at_limit.encode()) == MAX_FILE_BYTES
    assert "FILE_SIZE_EXCEEDED" not in rules(at_limit)
    failure = only(at_limit + "x")
    assert failure == {"stage": "static_analysis", "rule": "FILE_SIZE_EXCEEDED",
                       "detail": f"{MAX_FILE_BYTES + 1} bytes (limit {MAX_FILE_BYTES})"}


def test_size_counts_utf8_bytes():
    head = module("")
    source = head + "//" + "é" * ((MAX_FILE_BYTES - len(head)) // 2)
    assert len(source) <= MAX_FILE_BYTES < len(source.encode())
    assert rules(source) == ["FILE_SIZE_EXCEEDED"]


# -- failing modules ------------------------------------------------------------------------

def test_missing_default_export():
    assert only("function generate(THREE) { return new THREE.Mesh(); }") == {
        "stage": "static_analysis", "rule": "MISSING_DEFAULT_EXPORT", "detail": "no `export default` found"}


@pytest.mark.parametrize("source, kind", [
    ("const x = 1;\nexport default x;", "Identifier"),
    ("export default class A {}", "ClassDeclaration"),
    ("export default {generate: 1};", "ObjectExpression"),
    ("export default 42;", "NumericLiteral"),
])
def test_default_export_must_be_a_function(source, kind):
    failure = only(source)
    assert failure["rule"] == "MISSING_DEFAULT_EXPORT"
    assert failure["detail"] == f"default export must be a function, got {kind}"


def test_missing_default_export_stops_the_checks():
    assert rules("const w = window;\nfunction f() {}") == ["MISSING_DEFAULT_EXPORT"]


def test_import_statement_and_dynamic_import():
    source = "import * as T from 'three';\n" + module("const m = import('x');")
    failures = check_module(source)
    assert [f["rule"] for f in failures] == ["FORBIDDEN_IDENTIFIER", "FORBIDDEN_IDENTIFIER"]
    assert failures[0]["detail"] == "import statement at line 1"
    assert failures[1]["detail"] == "dynamic import() at line 3"


def test_require_is_not_allowed():
    failure = only(module("  const t = require('three');"))
    assert failure == {"stage": "static_analysis", "rule": "IDENTIFIER_NOT_ALLOWED", "detail": "require at line 2"}


@pytest.mark.parametrize("name", [
    "fetch", "XMLHttpRequest", "WebSocket", "document", "window", "eval", "Function", "setTimeout",
    "Date", "performance", "crypto", "process", "globalThis", "navigator", "self", "Proxy", "Reflect",
    "queueMicrotask", "setInterval", "Worker", "SharedArrayBuffer", "Atomics", "module", "global",
])
def test_forbidden_identifiers(name):
    failure = only(module(f"  const x = {name};"))
    assert failure == {"stage": "static_analysis", "rule": "FORBIDDEN_IDENTIFIER", "detail": f"{name} at line 2"}


def test_math_random():
    assert only(module("  const r = Math.random();"))["detail"] == "Math.random at line 2"
    assert only(module("  const r = Math . random;"))["rule"] == "FORBIDDEN_IDENTIFIER"


def test_forbidden_name_as_local_binding_and_in_template_code():
    assert only(module("  const fetch = 1;"))["detail"] == "fetch at line 2"
    assert only(module("  function f(window) { return 1; }"))["detail"] == "window at line 2"
    assert only(module("  const s = `a ${document.title} b`;"))["detail"] == "document at line 2"
    assert only(module("  const o = {...window};"))["detail"] == "window at line 2"


def test_failures_in_source_order_with_lines():
    source = module("  const a = Date;\n  const b = Math.random();\n  const c = fetch;")
    assert [f["detail"] for f in check_module(source)] == [
        "Date at line 2", "Math.random at line 3", "fetch at line 4"]


def test_multiple_top_level_exports():
    failure = only("export const size = 1;\n" + module(""))
    assert failure["rule"] == "MULTIPLE_TOP_LEVEL_EXPORTS"
    assert failure["detail"] == "found 2 top-level exports, expected exactly 1"


def test_async():
    assert only("export default async function g(THREE) { return new THREE.Mesh(); }") == {
        "stage": "static_analysis", "rule": "ASYNC_NOT_ALLOWED", "detail": "default export is an async function"}
    assert only(module("  const f = async () => 1;"))["detail"] == "async function at line 2"
    assert only(module("  await 1;"))["detail"] == "top-level await at line 2"


def test_three_api_rules():
    failures = check_module(module(
        "  new THREE.TextureLoader();\n  const M = THREE['Mesh'];\n  THREE.MathUtils.seededRandom(1);\n"
        "  new THREE.MeshPhongMaterial();"))
    assert [(f["rule"], f["detail"]) for f in failures] == [
        ("FORBIDDEN_THREE_API", "THREE.TextureLoader at line 2"),
        ("COMPUTED_PROPERTY_ACCESS", "computed access on THREE at line 3"),
        ("FORBIDDEN_THREE_API", "THREE.MathUtils.seededRandom at line 4"),
        ("FORBIDDEN_THREE_API", "THREE.MeshPhongMaterial at line 5"),
    ]


def test_literal_budget():
    assert check_module(module("  const s = '" + "a" * (LITERAL_BUDGET - 100) + "';")) == []
    failure = only(module("  const s = '" + "a" * LITERAL_BUDGET + "';"))
    assert failure["rule"] == "LITERAL_BUDGET_EXCEEDED"
    assert failure["detail"].endswith(f"bytes (limit {LITERAL_BUDGET})")


@pytest.mark.parametrize("body, detail", [
    ("  const s = 'open;", "Unterminated string constant. (2:12)"),
    ("  /* open", "Unterminated comment. (2:2)"),
    ("  const s = `open;", "Unterminated template. (2:12)"),
    ("  const a = (1;", 'Unexpected token, expected ")" (4:0)'),  # reported at the next closer
    ("  const a = 1);", 'Unexpected token, expected "}" (2:13)'),
    ("}\n}", "Unexpected token (3:0)"),
])
def test_parse_errors(body, detail):
    source = "export default function g(THREE) {\n" + body + "\n  return new THREE.Mesh();\n}\n"
    assert only(source) == {"stage": "static_analysis", "rule": "PARSE_ERROR", "detail": detail}


def test_empty_scene_is_a_post_validation_failure():
    source = "export default function g(THREE) { const g = new THREE.Group(); return g; }"
    assert check_module(source) == [{"stage": "post_validation", "rule": "EMPTY_SCENE",
                                     "detail": "bounding box is empty"}]
    assert empty_scene_metrics()["drawCalls"] == 0 and empty_scene_metrics()["bbox"] is None


def test_static_failures_come_before_empty_scene():
    assert rules("export default function g(THREE) { return window; }") == ["FORBIDDEN_IDENTIFIER"]


# -- scanner and features -------------------------------------------------------------------

def test_scan_keeps_offsets_and_lines():
    source = "a = 'x\\'y'; // note\nb = /re[/]/g.test(c) / 2; /* multi\nline */ d = `t${e}t`;"
    result = scan(source)
    assert result.error is None
    assert len(result.code) == len(source) and result.code.count("\n") == source.count("\n")
    assert "note" not in result.code and "multi" not in result.code and "re[" not in result.code
    assert "${e}" in result.code and "/ 2" in result.code


def test_features_of_fixture():
    features = module_features(VALID)
    assert features["colors"] == [(0xcc, 0x33, 0x22)]
    assert features["primitives"] == ["BoxGeometry"] and features["primitive_count"] == 1
    assert features["drawables"] == ["Mesh"] and features["drawable_count"] == 1
    assert features["bytes"] == len(VALID.encode())
    assert len(features["digest"]) == 64 and isinstance(features["seed"], int)


def test_feature_colours_in_source_order_deduplicated():
    source = module(
        "  const a = new THREE.MeshStandardMaterial({color: '#ff8800'});\n"
        "  const b = new THREE.Color(0x00ff00);\n"
        "  const c = new THREE.MeshBasicMaterial({color: \"#0af\"});\n"
        "  const d = new THREE.Color(1, 0.5, 0);\n"
        "  a.color.setHex(0xFF8800);\n"
        "  const seed = 0x9e3779b9; const small = 0xff; // 0x123456 in a comment\n"
        "  const label = 'not #ff0000 a colour';")
    assert module_features(source)["colors"] == [
        (255, 136, 0), (0, 255, 0), (0, 170, 255), (255, 128, 0)]


def test_feature_primitives_and_drawables():
    source = module(
        "  const g = new THREE.Group();\n"
        "  g.add(new THREE.Mesh(new THREE.SphereGeometry(0.1), new THREE.MeshBasicMaterial()));\n"
        "  g.add(new THREE.Points(new THREE.BufferGeometry()));\n"
        "  g.add(new THREE.LineSegments(new THREE.EdgesGeometry(new THREE.ConeGeometry(0.1, 0.2))));")
    features = module_features(source)
    assert features["primitives"] == ["SphereGeometry", "BufferGeometry", "EdgesGeometry", "ConeGeometry",
                                      "BoxGeometry"]
    assert features["drawables"] == ["Mesh", "Points", "LineSegments", "Mesh"]


def test_features_are_deterministic_and_source_dependent():
    assert module_features(VALID) == module_features(VALID)
    other = VALID.replace("0.5,0.5,0.5", "0.4,0.4,0.4")
    assert module_features(other)["digest"] != module_features(VALID)["digest"]
    assert module_features("")["colors"] == [] and module_features("")["primitive_count"] == 0
