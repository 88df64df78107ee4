"""404-cli as a user meets it: help, --print-manifest, argument errors and exit codes.

Every printed manifest is a valid runner404 manifest (`404-run validate`); running them is
covered by the other test_classic_* files.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

KEY = "tgn-secret-key-123"
SHA = "0123456789abcdef0123456789abcdef01234567"
WALLET = ["--wallet.name", "miner", "--wallet.hotkey", "default"]

COMMANDS = ["commit-hash", "commit-repo-cdn", "list-all", "start-generator", "generate", "start-renderer",
            "render", "start-judge", "judge", "stop-pods"]

# fixed, relative arguments for every command
ARGS = {
    "commit-hash": ["--hash", SHA, *WALLET],
    "commit-repo-cdn": ["--repo", "your-org/your-generator", "--cdn-url", "https://cdn.example.com/your-generator",
                        *WALLET],
    "list-all": ["--round", "24"],
    "start-generator": ["--image-url", "docker.io/you/your-generator:v1", "--targon-api-key", KEY],
    "generate": ["--prompts-json", "prompts.json", "--endpoint", "http://127.0.0.1:10006/", "--seed", "42"],
    "start-renderer": ["--targon-api-key", KEY],
    "render": ["--data-dir", "results", "--endpoint", "http://127.0.0.1:8000"],
    "start-judge": ["--targon-api-key", KEY],
    "judge": ["--prompts-json", "prompts.json", "--image-dir-1", "leader", "--image-dir-2", "results",
              "--endpoint", "http://127.0.0.1:8000/v1", "--seed", "42"],
    "stop-pods": ["--targon-api-key", KEY],
}


def cli(argv, cwd, **kw):
    return run_cli(argv, cwd=cwd, tool="404-cli", **kw)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps(
        {"prompts": [{"stem": "apple", "image_url": "https://example.com/apple.png"}], "seed": 7}))
    return tmp_path


def test_group_help(tmp_path, snapshot):
    result = cli(["--help"], tmp_path)
    assert result.exit_code == 0
    assert result.stdout == snapshot


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command, tmp_path, snapshot):
    result = cli([command, "--help"], tmp_path)
    assert result.exit_code == 0
    assert result.stdout == snapshot


@pytest.mark.parametrize("command", COMMANDS)
def test_print_manifest(command, folder, snapshot):
    result = cli([command, *ARGS[command], "--print-manifest"], folder)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout == snapshot
    assert result.stdout.startswith("# yaml-language-server: $schema=")
    assert KEY not in result.stdout + result.stderr
    assert not (folder / ".runner404").exists()  # printing runs nothing
    (folder / "m.yaml").write_text(result.stdout)
    valid = run_cli(["validate", "m.yaml"], cwd=folder)
    assert valid.exit_code == 0, valid.stdout + valid.stderr
    assert valid.stdout.startswith("m.yaml: valid (1 stages")


def test_the_targon_url_is_part_of_the_manifest(folder):
    result = cli(["start-renderer", "--targon-api-key", KEY, "--targon-url", "http://127.0.0.1:1", "--print-manifest"],
                 folder)
    assert "base_url: http://127.0.0.1:1" in result.stdout


def test_missing_required_option_is_a_usage_error(tmp_path):
    result = cli(["generate", "--endpoint", "http://127.0.0.1:1"], tmp_path)
    assert result.exit_code == 2
    assert "--prompts-json" in result.stderr and result.stdout == ""


def test_list_all_without_round_on_a_pipe_is_a_usage_error(tmp_path):
    result = cli(["list-all"], tmp_path, stdin="24\n")  # stdin is not a terminal: never read
    assert result.exit_code == 2
    assert "--round" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("argv, message", [
    (["generate", "--prompts-json", "prompts.json", "--endpoint", "http://127.0.0.1:1", "--seed", "abc"],
     "Invalid --seed value 'abc': expected a non-negative integer"),
    (["generate", "--prompts-json", "prompts.json", "--endpoint", "http://127.0.0.1:1", "--seed", "4.5"],
     "Invalid --seed value '4.5': expected a non-negative integer"),
    (["judge", "--prompts-json", "prompts.json", "--image-dir-1", "a", "--image-dir-2", "b",
      "--endpoint", "http://127.0.0.1:1", "--seed", "-3"],
     "Invalid --seed value '-3': expected a non-negative integer"),
    (["generate", "--prompts-json", "prompts.json", "--endpoint", "127.0.0.1:1"],
     "Invalid --endpoint URL: '127.0.0.1:1'. Expected http:// or https://"),
    (["commit-hash", "--hash", "abc123", *WALLET],
     "Invalid commit hash: abc123. Expected the full 40-character hex commit SHA "
     "(e.g. '3f786850e387550fdab836ed7e6dc881de23001b')"),
    (["commit-repo-cdn", "--repo", "not a repo", "--cdn-url", "https://cdn.example.com", *WALLET],
     "Invalid git repository format: not a repo. Expected format: 'user/repo' (e.g. 'mokabetrade/ansible-foundry')"),
    (["commit-repo-cdn", "--repo", "a/b/c", "--cdn-url", "https://cdn.example.com", *WALLET],
     "Invalid git repository format: a/b/c. Expected format: 'user/repo' (e.g. 'mokabetrade/ansible-foundry')"),
    (["commit-repo-cdn", "--repo", "me/gen", "--cdn-url", "ftp://cdn.example.com", *WALLET],
     "Invalid CDN URL format: ftp://cdn.example.com. Expected a valid URL with scheme (http:// or https://)"),
])
def test_bad_arguments_give_the_error_json(argv, message, folder):
    for extra in ([], ["--print-manifest"]):  # checked before printing, too
        result = cli([*argv, *extra], folder)
        assert result.exit_code == 1, result.stderr
        assert result.stdout == json.dumps({"success": False, "error": message}) + "\n"
        assert "Traceback" not in result.stderr


def test_an_invalid_value_for_the_schema_is_an_error_json_not_a_traceback(folder):
    result = cli(["start-judge", "--targon-api-key", KEY, "--resource", "gpu-huge"], folder)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "gpu-huge" in error and "Traceback" not in result.stderr


def test_verbosity_goes_before_the_command(folder):
    result = cli(["-vv", "list-all", "--round", "24", "--print-manifest"], folder)
    assert result.exit_code == 0
    assert cli(["list-all", "-v", "--round", "24"], folder).exit_code == 2
