"""Every invalid manifest in tests/fixtures/invalid is rejected with exit 2 and positioned
diagnostics; the full message text is pinned by a snapshot."""

from __future__ import annotations

import re

import pytest

from conftest import FIXTURES

INVALID = FIXTURES / "invalid"
CASES = sorted(p.name for p in INVALID.glob("*.yaml"))
EXTRA_ARGS = {"set-override-wrong-type.yaml": ["--set", "stages.render.concurrency=lots"]}


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", CASES)
def test_invalid_manifest_is_rejected(name, cli, snapshot):
    result = cli(["validate", name, *EXTRA_ARGS.get(name, [])], cwd=INVALID)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert re.search(rf"^({re.escape(name)}|--set):\d+:\d+: error: ", result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == snapshot


@pytest.mark.parametrize("name", CASES)
def test_invalid_manifest_json_diagnostics(name, cli):
    result = cli(["validate", name, "--format", "json", *EXTRA_ARGS.get(name, [])], cwd=INVALID)
    assert result.exit_code == 2
    import json

    diagnostics = json.loads(result.stdout)["diagnostics"]
    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert errors
    for d in errors:
        assert d["file"] in (name, "--set")
        assert d["line"] >= 1 and d["col"] >= 1 and d["message"]
