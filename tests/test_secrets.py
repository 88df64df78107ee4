"""A secret's value never reaches plan, graph, diagnostics or any JSON output."""

from __future__ import annotations

import json

from runner404.secret import Secret, by_name, redact

CANARY = "sk-canary-7f3a9c1e5b"

MANIFEST = """\
version: 1
name: secretive
secrets:
  targon: {env: RUNNER404_CANARY}
  token: {file: token.txt}
vars:
  header: "Bearer ${{ secrets.token }}"
provider:
  type: targon
  api_key: ${{ secrets.targon }}
pods:
  renderer:
    preset: renderer
    env: {AUTH: "${{ vars.header }}", KEY: "${{ secrets.targon }}"}
stages:
  render: {uses: render, pod: renderer, input: js/}
"""


def _write(tmp_path, text=MANIFEST):
    (tmp_path / "m.yaml").write_text(text)
    (tmp_path / "token.txt").write_text(CANARY + "\n")
    return tmp_path


def test_secret_masks_itself():
    secret = Secret(("targon",), lambda: CANARY)
    assert str(secret) == repr(secret) == f"{secret}" == "***"
    assert secret.reveal() == CANARY
    assert json.dumps(redact({"k": [secret]})) == '{"k": ["***"]}'
    assert by_name({"k": secret}) == {"k": {"secret": ["targon"]}}
    joined = Secret.join(["Bearer ", secret])
    assert str(joined) == "***" and joined.reveal() == f"Bearer {CANARY}"


def test_secret_value_is_nowhere_in_outputs(tmp_path, cli):
    cwd = _write(tmp_path)
    environ = {"RUNNER404_CANARY": CANARY}
    outputs = []
    for argv in (["validate", "m.yaml"], ["validate", "m.yaml", "--format", "json"],
                 ["plan", "m.yaml"], ["plan", "m.yaml", "--format", "json"],
                 ["graph", "m.yaml"], ["graph", "m.yaml", "--format", "dot"]):
        result = cli(argv, cwd=cwd, environ=environ)
        assert result.exit_code == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert not any(CANARY in text for text in outputs)


def test_secret_value_is_not_in_diagnostics(tmp_path, cli):
    broken = MANIFEST.replace("input: js/", "input: js/, concurrency: \"${{ secrets.targon }}\"")
    cwd = _write(tmp_path, broken)
    for fmt in ("text", "json"):
        result = cli(["validate", "m.yaml", "--format", fmt], cwd=cwd, environ={"RUNNER404_CANARY": CANARY})
        assert result.exit_code == 2
        assert "***" in result.stdout + result.stderr
        assert CANARY not in result.stdout + result.stderr


def test_validate_and_plan_do_not_need_secret_values(tmp_path, cli):
    cwd = _write(tmp_path)
    (tmp_path / "token.txt").unlink()
    assert cli(["plan", "m.yaml"], cwd=cwd).exit_code == 0  # RUNNER404_CANARY unset as well
