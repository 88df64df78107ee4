"""Cheap static checks and features of a generated three.js module (competition 2).

Shared by the stand-in renderer (`runner404.sim.renderer`) and generator stand-ins. This is no
JavaScript parser: a small scanner blanks comments and the insides of string, template and
regular-expression literals (offsets and line numbers are kept), then word-boundary regular
expressions look for the names the real validator rejects. Failures use the reference shape
`{"stage", "rule", "detail"}` and rule names (protocols.md section 3.4); like the real
render service, every static failure has stage `static_analysis`, and the first blocking one
(size, parse, missing default export, async default export) stops the checks.

- `check_module(source)` -> list of failures, `[]` when the module passes. When the static
  checks pass but the module creates no drawable object (`new THREE.Mesh|InstancedMesh|Points|
  Line|LineSegments|LineLoop`), the list holds one `post_validation` EMPTY_SCENE failure.
- `module_features(source)` -> colours, primitives, draw objects and a digest, for drawing.
"""

from __future__ import annotations

import bisect
import colorsys
import hashlib
import re
from dataclasses import dataclass, field

MAX_FILE_BYTES = 1024 * 1024  # 1 MiB, as in the validator's parse step
LITERAL_BUDGET = 50 * 1024

STATIC = "static_analysis"
POST = "post_validation"

# Names rejected wherever they appear as an identifier (bindings too), except as a member
# property (`x.window`) or a plain object key (`{window: 1}`) - as the Babel walk does.
FORBIDDEN_IDENTIFIERS = frozenset({
    "crypto", "Date", "performance",
    "fetch", "XMLHttpRequest", "WebSocket", "EventSource",
    "document", "window", "navigator", "localStorage", "sessionStorage", "indexedDB",
    "OffscreenCanvas", "HTMLCanvasElement",
    "eval", "Function",
    "setTimeout", "setInterval", "setImmediate", "clearTimeout", "clearInterval",
    "requestAnimationFrame", "queueMicrotask",
    "Proxy", "Reflect", "WeakRef", "FinalizationRegistry",
    "Worker", "SharedArrayBuffer", "Atomics",
    "process", "module", "global", "globalThis", "self",
})
# Free references the validator's allowlist does not contain (IDENTIFIER_NOT_ALLOWED); only
# call forms are checked here, since a scanner cannot tell a local binding from a global.
NOT_ALLOWED_CALLS = ("require",)
# THREE members outside the allowlist (section 3.2), checked as `THREE.<name>`.
FORBIDDEN_THREE = re.compile(
    r"\w*Loader|ShaderMaterial|RawShaderMaterial|MeshLambertMaterial|MeshPhongMaterial|"
    r"MeshToonMaterial|MeshMatcapMaterial|MeshNormalMaterial|MeshDepthMaterial|"
    r"CanvasTexture|VideoTexture|CompressedTexture|CubeTexture|Texture|"
    r"AnimationMixer|AnimationClip|AnimationAction|\w*KeyframeTrack|SkinnedMesh|Skeleton|Bone|"
    r"WebGLRenderer|WebGLRenderTarget|PMREMGenerator")
FORBIDDEN_MATHUTILS = ("seededRandom", "generateUUID")

DRAWABLE = ("Mesh", "InstancedMesh", "Points", "LineSegments", "LineLoop", "Line")

_ID = r"[A-Za-z_$][\w$]*"
_NOT_AFTER = r"(?<![\w$])"
_NOT_BEFORE = r"(?![\w$])"


# -- scanner --------------------------------------------------------------------------------

@dataclass
class Scan:
    code: str  # the source with comments and literal contents blanked (same length, same lines)
    strings: list[tuple[int, str]] = field(default_factory=list)  # (offset, contents) of string literals
    literal_bytes: int = 0  # UTF-8 bytes of string and template literal contents
    error: str | None = None  # a PARSE_ERROR detail, Babel style ("... (line:column)")


_INTERESTING = re.compile(r"[\"'`/(){}\[\]]")
_STRING = {q: re.compile(q + r"((?:[^" + q + r"\\\n]|\\[\s\S])*)" + q) for q in ("'", '"')}
_TEMPLATE_CHUNK = re.compile(r"(?:[^`\\$]|\\[\s\S]|\$(?!\{))*")
_REGEX_LITERAL = re.compile(r"/((?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\])+)/[\w$]*")
_REGEX_AFTER_CHARS = frozenset("(,=:[!&|?{};+-*%<>~^}")
_REGEX_AFTER_WORDS = frozenset({"return", "typeof", "case", "do", "else", "in", "of", "new", "delete",
                                "void", "throw", "instanceof", "yield", "await"})
_LAST_WORD = re.compile(r"[\w$]+$")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_BLANK = re.compile(r"[^\n]")


def _blank(text: str) -> str:
    return _BLANK.sub(" ", text)


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based line and 0-based column of an offset (Babel's convention)."""
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1)


def scan(source: str) -> Scan:
    out: list[str] = []
    result = Scan("")
    stack: list[tuple[str, int]] = []  # "(", "[", "{" or "${" with their offsets
    prev_char, prev_word = "", ""  # last significant token in code, to tell a regex from a division
    i, n = 0, len(source)

    def fail(message: str, at: int) -> Scan:
        line, column = position(source, at)
        result.error = f"{message} ({line}:{column})"
        done = "".join(out)
        result.code = done + _blank(source[len(done):])
        return result

    def template_from(start: int) -> tuple[int, bool] | None:
        """Scan template text from `start`; (offset after it, ended with backtick?)."""
        m = _TEMPLATE_CHUNK.match(source, start)
        end = m.end()
        text = source[start:end]
        out.append(_blank(text))
        result.strings.append((start, text))
        result.literal_bytes += len(text.encode("utf-8", "surrogatepass"))
        if end >= n:
            return None
        if source[end] == "`":
            out.append("`")
            return end + 1, True
        out.append("${")
        return end + 2, False

    while i < n:
        m = _INTERESTING.search(source, i)
        if m is None:
            out.append(source[i:])
            break
        j = m.start()
        if j > i:
            chunk = source[i:j]
            out.append(chunk)
            stripped = chunk.rstrip()
            if stripped:
                prev_char = stripped[-1]
                word = _LAST_WORD.search(stripped)
                prev_word = word.group(0) if word else ""
        ch = source[j]
        if ch in "'\"":
            sm = _STRING[ch].match(source, j)
            if sm is None:
                return fail("Unterminated string constant.", j)
            out.append(ch + _blank(sm.group(1)) + ch)
            result.strings.append((j + 1, sm.group(1)))
            result.literal_bytes += len(sm.group(1).encode("utf-8", "surrogatepass"))
            prev_char, prev_word, i = '"', "", sm.end()
        elif ch == "`":
            out.append("`")
            step = template_from(j + 1)
            if step is None:
                return fail("Unterminated template.", j)
            i, closed = step
            if not closed:
                stack.append(("${", i - 2))
                prev_char, prev_word = "{", ""
            else:
                prev_char, prev_word = '"', ""
        elif ch == "/":
            nxt = source[j + 1:j + 2]
            if nxt == "/":
                end = source.find("\n", j)
                end = n if end < 0 else end
                out.append(_blank(source[j:end]))
                i = end
            elif nxt == "*":
                end = source.find("*/", j + 2)
                if end < 0:
                    return fail("Unterminated comment.", j)
                out.append(_blank(source[j:end + 2]))
                i = end + 2
            elif prev_char == "" or prev_char in _REGEX_AFTER_CHARS or (
                    prev_word in _REGEX_AFTER_WORDS and prev_char == prev_word[-1:]):
                rm = _REGEX_LITERAL.match(source, j)
                if rm is None:
                    return fail("Unterminated regexp.", j)
                out.append("/" + _blank(rm.group(1)) + "/" + source[j + 2 + len(rm.group(1)):rm.end()])
                prev_char, prev_word, i = '"', "", rm.end()
            else:
                out.append("/")
                prev_char, prev_word, i = "/", "", j + 1
        elif ch in "([{":
            stack.append((ch, j))
            out.append(ch)
            prev_char, prev_word, i = ch, "", j + 1
        else:  # one of )]}
            if not stack:
                return fail("Unexpected token", j)
            opener, _ = stack.pop()
            if opener == "${" and ch == "}":
                out.append("}")
                step = template_from(j + 1)
                if step is None:
                    return fail("Unterminated template.", j)
                i, closed = step
                if not closed:
                    stack.append(("${", i - 2))
                    prev_char, prev_word = "{", ""
                else:
                    prev_char, prev_word = '"', ""
                continue
            if opener == "${" or _CLOSERS[opener] != ch:
                expected = "}" if opener == "${" else _CLOSERS[opener]
                return fail(f'Unexpected token, expected "{expected}"', j)
            out.append(ch)
            prev_char, prev_word, i = ch, "", j + 1
    if stack:
        opener, _ = stack[-1]
        expected = "}" if opener == "${" else _CLOSERS[opener]
        return fail(f'Unexpected token, expected "{expected}"', n)
    result.code = "".join(out)
    return result


# -- checks ---------------------------------------------------------------------------------

_EXPORT = re.compile(_NOT_AFTER + r"export" + _NOT_BEFORE)
_DEFAULT_FN = re.compile(r"\s+default\s+(async\s+)?function" + _NOT_BEFORE)
_DEFAULT_ARROW = re.compile(r"\s+default\s+(async\s*)?(?:\((?:[^()]|\([^()]*\))*\)|" + _ID + r")\s*=>")
_DEFAULT_WORD = re.compile(r"\s+default" + _NOT_BEFORE + r"\s*(?=(\S?))(" + _ID + r")?")
_FORBIDDEN = re.compile(_NOT_AFTER + "(" + "|".join(sorted(FORBIDDEN_IDENTIFIERS)) + ")" + _NOT_BEFORE)
_MATH_RANDOM = re.compile(_NOT_AFTER + r"Math\s*\??\.\s*random" + _NOT_BEFORE)
_IMPORT = re.compile(_NOT_AFTER + r"import" + _NOT_BEFORE + r"\s*(\(|\.)?")
_NOT_ALLOWED = re.compile(_NOT_AFTER + "(" + "|".join(NOT_ALLOWED_CALLS) + r")\s*\(")
_ASYNC = re.compile(_NOT_AFTER + r"async(?=\s*(?:function" + _NOT_BEFORE + r"|\(|" + _ID + r"\s*=>))")
_AWAIT = re.compile(_NOT_AFTER + r"await" + _NOT_BEFORE)
_THREE_MEMBER = re.compile(_NOT_AFTER + r"THREE\s*\.\s*(" + _ID + ")")
_THREE_COMPUTED = re.compile(_NOT_AFTER + r"(THREE|Math)\s*\[")
_MATHUTILS = re.compile(_NOT_AFTER + r"THREE\s*\.\s*MathUtils\s*\.\s*(" + "|".join(FORBIDDEN_MATHUTILS) + ")"
                        + _NOT_BEFORE)
_NUMBER = re.compile(_NOT_AFTER + r"(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|"
                     r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)n?")


def _member_property(code: str, at: int) -> bool:
    """Is the word at `at` the property of a member expression (`x.name`, `x?.name`)?"""
    k = at - 1
    while k >= 0 and code[k] in " \t\r\n":
        k -= 1
    return k >= 0 and code[k] == "." and not (k >= 2 and code[k - 2:k + 1] == "...")


def _object_key(code: str, start: int, end: int) -> bool:
    """Is the word at start..end a plain key in an object literal (`{name: ...}`)?"""
    k = end
    while k < len(code) and code[k] in " \t\r\n":
        k += 1
    if k >= len(code) or code[k] != ":":
        return False
    k = start - 1
    while k >= 0 and code[k] in " \t\r\n":
        k -= 1
    return k >= 0 and code[k] in "{,"


def _failure(rule: str, detail: str, stage: str = STATIC) -> dict:
    return {"stage": stage, "rule": rule, "detail": detail}


def check_module(source: str) -> list[dict]:
    """The validator failures of a module (static ones first and alone), `[]` when it passes."""
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return [_failure("FILE_SIZE_EXCEEDED", f"{size} bytes (limit {MAX_FILE_BYTES})")]
    scanned = scan(source)
    if scanned.error:
        return [_failure("PARSE_ERROR", scanned.error)]
    code = scanned.code

    newlines = [m.start() for m in re.finditer("\n", source)]

    def line(at: int) -> int:
        return bisect.bisect_left(newlines, at) + 1

    exports = [m for m in _EXPORT.finditer(code) if not _member_property(code, m.start())]
    defaults = [m for m in exports if _DEFAULT_WORD.match(code, m.end())]
    if not defaults:
        return [_failure("MISSING_DEFAULT_EXPORT", "no `export default` found")]
    failures: list[dict] = []
    if len(exports) > 1:
        failures.append(_failure("MULTIPLE_TOP_LEVEL_EXPORTS",
                                 f"found {len(exports)} top-level exports, expected exactly 1"))
    after = defaults[0].end()
    fn = _DEFAULT_FN.match(code, after) or _DEFAULT_ARROW.match(code, after)
    if fn is None:
        word = _DEFAULT_WORD.match(code, after)
        first, name = word.group(1), word.group(2)
        kind = ("ClassDeclaration" if name == "class" else "Identifier" if name
                else "ObjectExpression" if first == "{" else "ArrayExpression" if first == "["
                else "StringLiteral" if first in "'\"" else "NumericLiteral" if first.isdigit()
                else "Expression")
        failures.append(_failure("MISSING_DEFAULT_EXPORT", f"default export must be a function, got {kind}"))
        return failures
    if fn.group(1):
        failures.append(_failure("ASYNC_NOT_ALLOWED", "default export is an async function"))
        return failures

    found: list[tuple[int, dict]] = []
    asyncs = list(_ASYNC.finditer(code))
    for m in asyncs:
        if not _member_property(code, m.start()):
            found.append((m.start(), _failure("ASYNC_NOT_ALLOWED", f"async function at line {line(m.start())}")))
    if not asyncs:
        for m in _AWAIT.finditer(code):
            if not _member_property(code, m.start()):
                found.append((m.start(), _failure("ASYNC_NOT_ALLOWED", f"top-level await at line {line(m.start())}")))
    for m in _IMPORT.finditer(code):
        if _member_property(code, m.start()):
            continue
        what = {"(": "dynamic import()", ".": "import.meta"}.get(m.group(1) or "", "import statement")
        found.append((m.start(), _failure("FORBIDDEN_IDENTIFIER", f"{what} at line {line(m.start())}")))
    for m in _FORBIDDEN.finditer(code):
        if _member_property(code, m.start()) or _object_key(code, m.start(), m.end()):
            continue
        found.append((m.start(), _failure("FORBIDDEN_IDENTIFIER", f"{m.group(1)} at line {line(m.start())}")))
    for m in _MATH_RANDOM.finditer(code):
        if not _member_property(code, m.start()):
            found.append((m.start(), _failure("FORBIDDEN_IDENTIFIER", f"Math.random at line {line(m.start())}")))
    for m in _NOT_ALLOWED.finditer(code):
        if not _member_property(code, m.start()):
            found.append((m.start(), _failure("IDENTIFIER_NOT_ALLOWED", f"{m.group(1)} at line {line(m.start())}")))
    for m in _THREE_COMPUTED.finditer(code):
        if not _member_property(code, m.start()):
            found.append((m.start(), _failure("COMPUTED_PROPERTY_ACCESS",
                                              f"computed access on {m.group(1)} at line {line(m.start())}")))
    for m in _THREE_MEMBER.finditer(code):
        if not _member_property(code, m.start()) and FORBIDDEN_THREE.fullmatch(m.group(1)):
            found.append((m.start(), _failure("FORBIDDEN_THREE_API", f"THREE.{m.group(1)} at line {line(m.start())}")))
    for m in _MATHUTILS.finditer(code):
        if not _member_property(code, m.start()):
            found.append((m.start(), _failure("FORBIDDEN_THREE_API",
                                              f"THREE.MathUtils.{m.group(1)} at line {line(m.start())}")))
    found.sort(key=lambda item: item[0])
    failures.extend(f for _, f in found)
    literal_bytes = scanned.literal_bytes + sum(len(m.group(0)) for m in _NUMBER.finditer(code))
    if literal_bytes > LITERAL_BUDGET:
        failures.append(_failure("LITERAL_BUDGET_EXCEEDED", f"{literal_bytes} bytes (limit {LITERAL_BUDGET})"))
    if failures:
        return failures
    if not _drawables(code):
        return [_failure("EMPTY_SCENE", "bounding box is empty", POST)]
    return []


def empty_scene_metrics() -> dict:
    """The `metrics` of a post_validation_failed answer for a scene without drawables."""
    return {"vertices": 0, "drawCalls": 0, "depth": 0, "instances": 0, "textureBytes": 0, "bbox": None}


# -- features -------------------------------------------------------------------------------

_HEX_COLOUR = re.compile(_NOT_AFTER + r"0[xX]([0-9a-fA-F]{6})" + _NOT_BEFORE)
_CSS_HEX = re.compile(r"\s*#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\s*")
_FLOAT = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"
_RGB_CALL = re.compile(_NOT_AFTER + r"(Color|setRGB|setHSL)\s*\(" + _FLOAT + "," + _FLOAT + "," + _FLOAT + r"\)")
_GEOMETRY = re.compile(_NOT_AFTER + r"new\s+THREE\s*\.\s*([A-Z][\w$]*Geometry)\s*\(")
_DRAWABLE = re.compile(_NOT_AFTER + r"new\s+THREE\s*\.\s*(" + "|".join(DRAWABLE) + r")\s*\(")


def _drawables(code: str) -> list[str]:
    return [m.group(1) for m in _DRAWABLE.finditer(code)]


def _unit(value: str) -> float:
    return min(1.0, max(0.0, float(value)))


def module_features(source: str) -> dict:
    """What the stand-in picture needs from a module.

    Keys: `colors` (RGB tuples in source order, deduplicated: 0xRRGGBB literals, '#rgb' /
    '#rrggbb' strings, `Color(r, g, b)` / `setRGB` / `setHSL` with literal 0..1 floats),
    `primitives` (`new THREE.<X>Geometry` class names in order), `primitive_count`,
    `drawables` (`new THREE.Mesh|Points|...` class names), `drawable_count`, `bytes`,
    `lines`, `digest` (SHA-256 hex of the UTF-8 source) and `seed` (an int from the digest).
    """
    raw = source.encode("utf-8", "surrogatepass")
    scanned = scan(source)
    code = scanned.code if scanned.error is None else source
    found: list[tuple[int, tuple[int, int, int]]] = []
    for m in _HEX_COLOUR.finditer(code):
        value = int(m.group(1), 16)
        found.append((m.start(), (value >> 16 & 255, value >> 8 & 255, value & 255)))
    for at, text in scanned.strings:
        m = _CSS_HEX.fullmatch(text)
        if m:
            digits = m.group(1)
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            value = int(digits, 16)
            found.append((at, (value >> 16 & 255, value >> 8 & 255, value & 255)))
    for m in _RGB_CALL.finditer(code):
        a, b, c = (_unit(m.group(k)) for k in (2, 3, 4))
        if m.group(1) == "setHSL":
            a, b, c = colorsys.hls_to_rgb(a, c, b)
        found.append((m.start(), (round(a * 255), round(b * 255), round(c * 255))))
    colours: list[tuple[int, int, int]] = []
    for _, rgb in sorted(found, key=lambda item: item[0]):
        if rgb not in colours:
            colours.append(rgb)
    primitives = [m.group(1) for m in _GEOMETRY.finditer(code)]
    drawables = _drawables(code)
    digest = hashlib.sha256(raw).hexdigest()
    return {
        "colors": colours,
        "primitives": primitives,
        "primitive_count": len(primitives),
        "drawables": drawables,
        "drawable_count": len(drawables),
        "bytes": len(raw),
        "lines": source.count("\n") + 1,
        "digest": digest,
        "seed": int(digest[:16], 16),
    }
