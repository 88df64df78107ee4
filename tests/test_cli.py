"""404-run and 404-cli as a user meets them: help, version, init, schema, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from runner404 import __version__
from runner404.errors import ExitCode
from runner404.schema import manifest_schema, schema_path


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["plan", "--help"],
                                  ["graph", "--help"], ["schema", "--help"], ["init", "--help"]])
def test_404_run_help(argv, cli, snapshot):
    result = cli(argv)
    assert result.exit_code == 0
    assert result.stdout == snapshot


def test_404_cli_help(cli, snapshot):
    result = cli(["--help"], tool="404-cli")
    assert result.exit_code == 0
    assert result.stdout == snapshot


def test_no_arguments_shows_help(cli):
    result = cli([])
    assert result.exit_code == ExitCode.USAGE
    assert "Usage: 404-run" in result.stdout + result.stderr


def test_version(cli):
    result = cli(["--version"])
    assert (result.exit_code, result.stdout) == (0, f"404-run {__version__}\n")


def test_exit_code_ok(cli):
    assert cli(["validate", "manifests/quickstart.yaml"]).exit_code == ExitCode.OK == 0


def test_exit_code_usage_for_invalid_manifest(cli):
    assert cli(["validate", "tests/fixtures/invalid/wrong-type.yaml"]).exit_code == ExitCode.USAGE == 2


def test_exit_code_usage_for_unknown_option(cli):
    result = cli(["plan", "manifests/quickstart.yaml", "--frobnicate"])
    assert result.exit_code == ExitCode.USAGE
    assert "--frobnicate" in result.stderr


def test_plan_of_invalid_manifest_exits_2_with_diagnostics(cli):
    result = cli(["plan", "tests/fixtures/invalid/unknown-pod.yaml"])
    assert result.exit_code == 2
    assert result.stderr.startswith("tests/fixtures/invalid/unknown-pod.yaml:9:10: error: ")
    assert result.stdout == ""


def test_missing_manifest_file(cli):
    result = cli(["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert result.stderr.startswith("nope.yaml:1:1: error: file not found")


def test_bad_set_option_is_a_usage_error(cli):
    result = cli(["plan", "manifests/quickstart.yaml", "--set", "novalue"])
    assert result.exit_code == 2
    assert result.stderr == ("404-run: error: --set 'novalue': expected PATH=VALUE, "
                             "e.g. --set vars.seed=7\n")


def test_set_changes_the_plan(cli):
    plan = lambda *extra: json.loads(cli(["plan", "manifests/quickstart.yaml", "--format", "json", *extra]).stdout)
    before, after = plan(), plan("--set", "vars.seed=7")
    fingerprints = lambda p: {s["id"]: s["fingerprint"] for s in p["stages"]}
    assert fingerprints(before) != fingerprints(after)
    assert plan("--set", "vars.seed=42") == before


def test_vars_file(tmp_path, cli):
    (tmp_path / "vars.yaml").write_text("seed: 'not a number'\n")
    result = cli(["validate", str(ROOT / "manifests/quickstart.yaml"), "--vars-file", "vars.yaml"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "expected integer, got string 'not a number'" in result.stderr


def test_validate_json_of_valid_manifest_lists_warnings(tmp_path, cli):
    manifest = (ROOT / "manifests/quickstart.yaml").read_text().replace(
        "prompts:\n  demo:", "prompts:\n  unused: {items: [https://example.com/x.png], seed: 1}\n  demo:")
    (tmp_path / "m.yaml").write_text(manifest)
    shutil.copytree(ROOT / "manifests/quickstart", tmp_path / "quickstart")
    result = cli(["validate", "m.yaml", "--format", "json"], cwd=tmp_path)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["diagnostics"] == [{
        "file": "m.yaml", "line": 29, "col": 3, "severity": "warning",
        "message": "prompt set 'unused' is not used by any stage"}]


def test_schema_command_prints_the_packaged_schema(cli):
    result = cli(["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == manifest_schema()
    assert schema_path() == ROOT / "schemas" / "manifest.schema.json"


def test_init_writes_a_valid_starter(tmp_path, cli):
    result = cli(["init", "proj"], cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "proj").iterdir())
    assert written == ["manifest.schema.json", "manifest.yaml", "prompts.json"]
    text = (tmp_path / "proj/manifest.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=manifest.schema.json\n")
    assert json.loads((tmp_path / "proj/manifest.schema.json").read_text()) == manifest_schema()
    validated = cli(["validate", "proj/manifest.yaml"], cwd=tmp_path)
    assert validated.exit_code == 0, validated.stderr


def test_init_refuses_to_overwrite(tmp_path, cli):
    assert cli(["init"], cwd=tmp_path).exit_code == 0
    (tmp_path / "manifest.yaml").write_text("mine\n")
    result = cli(["init"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "already exist" in result.stderr and "--force" in result.stderr
    assert (tmp_path / "manifest.yaml").read_text() == "mine\n"
    assert cli(["init", "--force"], cwd=tmp_path).exit_code == 0
    assert (tmp_path / "manifest.yaml").read_text() != "mine\n"


def imported_by(tool: str, argv: list[str], cwd: Path = ROOT) -> tuple[int, set[str], str]:
    """Run a CLI command in a fresh interpreter: its exit code, the top-level packages it imported
    and its output (start-up cost is mostly what a command imports, so it is checked without timing)."""
    module = {"404-run": "runner404.cli.run", "404-cli": "runner404.cli.classic"}[tool]
    code = (f"import sys; from {module} import main; rc = main({argv!r}); "
            "print('\\nimported:', ' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr); "
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd)
    stderr, _, modules = done.stderr.rpartition("\nimported: ")
    return done.returncode, set(modules.split()), done.stdout + stderr


# Libraries that a command neither validating nor running has no use for (pydantic comes with
# typer's value conversion, rich with typer's rich help).
NOT_FOR_HELP = {"jsonschema", "jinja2", "httpx", "bittensor", "yaml", "pydantic", "rich", "asyncio"}
NOT_FOR_VALIDATE = {"jinja2", "httpx", "bittensor", "pydantic", "rich", "asyncio", "sqlite3", "PIL"}
NO_EXPRESSIONS = """\
version: 1
name: small
provider: local
pods:
  renderer: {preset: renderer, command: python -m runner404.sim renderer}
stages:
  render: {uses: render, pod: renderer, input: js/}
"""


@pytest.mark.parametrize("tool,argv", [("404-run", ["--help"]), ("404-cli", ["--help"]),
                                       ("404-run", ["validate", "--help"]), ("404-cli", ["judge", "--help"])])
def test_help_does_not_import_heavy_modules(tool, argv):
    """--help must stay fast: no schema validation, templating, HTTP, chain or rich libraries."""
    code, modules, output = imported_by(tool, argv)
    assert code == 0, output
    assert f"Usage: {tool}" in output
    assert modules & NOT_FOR_HELP == set()


def test_validate_without_expressions_does_not_import_heavy_modules(tmp_path):
    """Validating a manifest without `${{` needs YAML and the schema, not Jinja2, pydantic or HTTP."""
    (tmp_path / "small.yaml").write_text(NO_EXPRESSIONS)
    (tmp_path / "js").mkdir()
    code, modules, output = imported_by("404-run", ["validate", "small.yaml", "--format", "text"], tmp_path)
    assert code == 0, output
    assert "small.yaml: valid (1 stages, 1 pods, 0 prompt sets)" in output
    assert modules & NOT_FOR_VALIDATE == set()
    assert {"yaml", "jsonschema"} <= modules

    (tmp_path / "expr.yaml").write_text(NO_EXPRESSIONS.replace("input: js/", "input: \"${{ 'js/' }}\""))
    code, modules, output = imported_by("404-run", ["validate", "expr.yaml"], tmp_path)
    assert code == 0, output
    assert "jinja2" in modules  # so the check above would notice an import


def test_console_scripts_are_installed():
    for script in ("404-run", "404-cli"):
        path = Path(sys.executable).parent / script  # installed beside the interpreter
        done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"Usage: {script}" in done.stdout


def test_the_manifest_reference_in_docs_is_generated_from_the_schema(cli):
    """Like black's docs: the reference may not drift from the schema (regenerate with
    `404-run schema --format markdown > docs/manifest-reference.md`)."""
    result = cli(["schema", "--format", "markdown"])
    assert result.exit_code == 0
    assert (ROOT / "docs/manifest-reference.md").read_text() == result.stdout


def test_every_schema_property_is_described():
    def walk(schema, path):
        for key, prop in schema.get("properties", {}).items():
            if key != "$schema" and "$ref" not in prop:
                assert prop.get("description"), f"{path}.{key} has no description"
            walk(prop, f"{path}.{key}")
        for option in schema.get("anyOf", []):
            walk(option, path)

    root = manifest_schema()
    walk(root, "manifest")
    for name, definition in root["$defs"].items():
        walk(definition, name)



KEYLESS = """\
version: 1
name: keyed
provider: {type: targon}
pods:
  renderer: {preset: renderer}
stages:
  render: {uses: render, pod: renderer, input: js/}
"""


@pytest.mark.parametrize("assignment", [
    "provider.api_key=tgn-typed-key-123",  # valid, with a warning quoting the --set
    "provider.api_key=4242424242",  # a number: a schema error about the value
    "provider={type: targon, api_key: tgn-typed-key-123}",
    "pods.renderer.env.HF_TOKEN=[hf-typed-key-123]",  # a list: a schema error about the value
])
@pytest.mark.parametrize("format", ["text", "json"])
def test_a_secret_given_by_set_is_not_echoed(tmp_path, cli, assignment, format):
    (tmp_path / "m.yaml").write_text(KEYLESS)
    (tmp_path / "js").mkdir()
    result = cli(["validate", "m.yaml", "--set", assignment, "--format", format], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "--set" in output, output  # a diagnostic at the --set was reported ...
    assert "typed-key" not in output and "4242424242" not in output  # ... without the value
    if format == "text":
        assert f"{assignment.partition('=')[0]}=***" in output


@pytest.mark.parametrize("typo", ["provider.api_key:tgn-typed-key-123", "provider.api_key tgn-typed-key-123"])
def test_a_secret_in_a_malformed_set_is_not_echoed(tmp_path, cli, typo):
    (tmp_path / "m.yaml").write_text(KEYLESS)
    result = cli(["validate", "m.yaml", "--set", typo], cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr == (f"404-run: error: --set '{typo[:len('provider.api_key') + 1]}***': expected "
                             "PATH=VALUE, e.g. --set vars.seed=7\n")
