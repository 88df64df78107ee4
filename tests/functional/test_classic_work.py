"""generate, render and judge against running stand-ins given as --endpoint (loopback)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MANIFESTS, run_cli
from engine_helpers import tree, wait_for_event
from runner404.sim.generator import start_generator
from runner404.sim.renderer import start_renderer
from runner404.sim.vlm import start_vlm
from runner404.views import VIEW_SETS

STEMS = ["apple", "boat", "cactus"]
WHITE = sorted(f"{v.name}.png" for v in VIEW_SETS["404-cli"]["white"])
GRAY = sorted(f"{v.name}.png" for v in VIEW_SETS["404-cli"]["gray"])
CLASSIC = str(Path(sys.executable).parent / "404-cli")


def cli(argv, cwd, **kw):
    return run_cli(argv, cwd=cwd, tool="404-cli", **kw)


def one_json(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0])


def prompts(folder: Path, seed: int | None = 42) -> None:
    shutil.copytree(MANIFESTS / "quickstart" / "images", folder / "images", dirs_exist_ok=True)
    data: dict = {"prompts": [{"stem": s, "image_url": f"images/{s}.png"} for s in STEMS]}
    if seed is not None:
        data["seed"] = seed
    (folder / "prompts.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def services():
    servers = {"good": start_generator(quality="good"), "poor": start_generator(quality="poor"),
               "renderer": start_renderer(), "vlm": start_vlm()}
    yield {name: server.url for name, server in servers.items()} | {"servers": servers}
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, services):
    """generate (good and poor) and render both, with the classic commands; kept for the judge."""
    folder = tmp_path_factory.mktemp("pipeline")
    prompts(folder)
    runs = {
        "good": cli(["generate", "--prompts-json", "prompts.json", "--endpoint", services["good"] + "/",
                     "--output-folder", "good"], folder),
        "poor": cli(["-v", "generate", "--prompts-json", "prompts.json", "--endpoint", services["poor"],
                     "--output-folder", "poor", "--seed", "7"], folder),
        "rgood": cli(["render", "--data-dir", "good", "--endpoint", services["renderer"], "--output-dir", "rgood"],
                     folder),
        "rpoor": cli(["render", "--data-dir", "poor", "--endpoint", services["renderer"], "--output-dir", "rpoor",
                      "--concurrency", "3"], folder),
    }
    for name, result in runs.items():
        assert result.exit_code == 0, (name, result.stdout, result.stderr)
    return folder, runs


def test_generate(pipeline, services):
    folder, runs = pipeline
    assert one_json(runs["good"]) == {"success": True}
    assert "Reading prompts from JSON file...\nFound 3 prompts to process\n" in runs["good"].stderr
    assert sorted(p.name for p in (folder / "good").iterdir()) == [f"{s}.js" for s in STEMS]
    batches = {name: services["servers"][name].batches for name in ("good", "poor")}
    assert [b["seed"] for b in batches["good"]] == [42]  # the file's seed
    assert [b["seed"] for b in batches["poor"]] == [7]  # --seed wins
    assert "Submitting batch with 3 prompts" in runs["poor"].stderr  # -v
    again = cli(["generate", "--prompts-json", "prompts.json", "--endpoint", services["good"], "--output-folder", "good"],
                folder)
    assert one_json(again) == {"success": True}
    assert "generate: skipped (up to date" in again.stderr  # idempotent: nothing is generated twice
    assert len(batches["good"]) == 1


def test_render(pipeline):
    folder, runs = pipeline
    assert one_json(runs["rgood"]) == {"success": True, "output_dir": "rgood"}
    assert "Rendering good with endpoint" in runs["rgood"].stderr
    for out in ("rgood", "rpoor"):
        for stem in STEMS:
            assert sorted(p.name for p in (folder / out / stem).iterdir()) == ["gray", "grid.png", "white"]
            assert sorted(p.name for p in (folder / out / stem / "white").iterdir()) == WHITE
            assert sorted(p.name for p in (folder / out / stem / "gray").iterdir()) == GRAY


def test_judge(pipeline, services):
    folder, _ = pipeline
    result = cli(["judge", "--prompts-json", "prompts.json", "--image-dir-1", "rpoor", "--image-dir-2", "rgood",
                  "--endpoint", services["vlm"] + "/v1/", "--seed", "42", "--concurrency", "3"], folder)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert one_json(result) == {"success": True, "output_dir": "judge-results"}
    assert f"Judging prompts.json with endpoint {services['vlm']}\n" in result.stderr
    for stem in STEMS:
        assert f"\nJudging {stem}\n" in result.stderr
        assert f"{stem} S1: {{" in result.stderr and f"{stem} final: winner=" in result.stderr
    duels = json.loads((folder / "judge-results/duels.json").read_text())["results"]
    assert [d["stem"] for d in duels] == STEMS
    assert sum(d["winner"] == "right" for d in duels) >= 2  # the good generator mostly wins


def _verdict(record: dict) -> tuple:
    return record["stem"], record["winner"], record["detail"].get("decided_by")


def _comparable(files: dict[str, bytes]) -> dict[str, object]:
    """Result files; for the judge, each duel's verdict (the VLM stand-in's tie-breaking noise
    moves with the temperature of a retried call, and a loopback connection may be reset), and
    the match without the folder names."""
    out: dict[str, object] = {}
    for name, data in files.items():
        if name.endswith("/duels.json"):
            out[name] = [_verdict(r) for r in json.loads(data)["results"]]
        elif name.endswith("/match.json"):
            value = json.loads(data)
            value.pop("left_dir"), value.pop("right_dir")
            out[name] = value
        elif name.startswith("judge-results/"):
            out[name] = _verdict(json.loads(data))
        else:
            out[name] = data
    return out


def test_the_printed_manifests_give_the_same_files(pipeline, services, tmp_path):
    folder, _ = pipeline
    prompts(tmp_path)
    shutil.copytree(folder / "rpoor", tmp_path / "rpoor")
    commands = [
        ["generate", "--prompts-json", "prompts.json", "--endpoint", services["good"], "--output-folder", "good"],
        ["render", "--data-dir", "good", "--endpoint", services["renderer"], "--output-dir", "rgood"],
        ["judge", "--prompts-json", "prompts.json", "--image-dir-1", "rpoor", "--image-dir-2", "rgood",
         "--endpoint", services["vlm"], "--seed", "42", "--concurrency", "3"],
    ]
    for argv in commands:
        printed = cli([*argv, "--print-manifest"], tmp_path)
        (tmp_path / f"{argv[0]}.yaml").write_text(printed.stdout)
        result = run_cli(["run", f"{argv[0]}.yaml"], cwd=tmp_path)
        assert result.exit_code == 0, result.stdout + result.stderr
    if not (folder / "judge-results").exists():
        assert cli([*commands[2]], folder).exit_code == 0
    for out in ("good", "rgood", "judge-results"):
        assert _comparable({f"{out}/{k}": v for k, v in tree(tmp_path / out).items()}) == \
            _comparable({f"{out}/{k}": v for k, v in tree(folder / out).items()}), out


@pytest.mark.parametrize("content, message", [
    (None, "Prompts JSON file prompts.json not found"),
    ("{not json", "Invalid JSON in prompts.json: Expecting property name enclosed in double quotes: "
                  "line 1 column 2 (char 1)"),
    ("[1, 2]", "JSON must contain non-empty 'prompts' list"),
    ({"prompts": []}, "JSON must contain non-empty 'prompts' list"),
    ({"prompts": ["https://example.com/a.png"], "seed": 1}, "prompts[0] must be an object"),
    ({"prompts": [{"image_url": "  "}], "seed": 1}, "prompts[0].image_url must be a non-empty string"),
    ({"prompts": [{"stem": "", "image_url": "a.png"}], "seed": 1},
     "prompts[0].stem must be a non-empty string when provided"),
    ({"prompts": [{"stem": "bad-stem", "image_url": "a.png"}], "seed": 1},
     "Invalid stem 'bad-stem'. Batch API requires lowercase alphanumeric stems."),
    ({"prompts": [{"image_url": "https://example.com/caf\u00e9.png"}], "seed": 1},
     "Invalid stem 'caf\u00e9'. Batch API requires lowercase alphanumeric stems."),
    ({"prompts": [{"image_url": "https://example.com/a.png"}, {"image_url": "https://example.com/A.jpg?x=1"}],
      "seed": 1}, "Prompt stems must be unique within a batch"),
    ({"prompts": [{"image_url": "https://example.com/a.png"}]},
     "Provide --seed or include numeric 'seed' in prompts JSON"),
    ({"prompts": [{"image_url": "https://example.com/a.png"}], "seed": "forty"},
     "'seed' in prompts JSON must be an integer"),
])
def test_generate_rejects_bad_prompt_files(tmp_path, content, message):
    if content is not None:
        (tmp_path / "prompts.json").write_text(content if isinstance(content, str) else json.dumps(content))
    result = cli(["generate", "--prompts-json", "prompts.json", "--endpoint", "http://127.0.0.1:9"], tmp_path)
    assert result.exit_code == 1
    assert result.stdout == json.dumps({"success": False, "error": message}) + "\n"  # D14: JSON on stdout
    assert "Traceback" not in result.stderr


def test_judge_has_its_own_wording_and_ignores_the_seed_requirement(tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps({"prompts": []}))
    argv = ["judge", "--prompts-json", "prompts.json", "--image-dir-1", "a", "--image-dir-2", "b",
            "--endpoint", "http://127.0.0.1:9", "--seed", "1"]
    result = cli(argv, tmp_path)
    assert result.exit_code == 1
    assert one_json(result)["error"] == "prompts JSON must contain a non-empty 'prompts' list"


def test_render_without_js_files(tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli(["render", "--data-dir", "empty", "--endpoint", "http://127.0.0.1:9"], tmp_path)
    assert result.exit_code == 1
    assert one_json(result)["error"] == ("No .js files found in empty. This service expects JavaScript source and "
                                         "JSON body {'source': ...}.")


def test_failed_prompts_are_an_error_json_and_the_others_are_kept(tmp_path):
    server = start_generator(quality="poor", fail_stems="boat")
    try:
        prompts(tmp_path)
        result = cli(["generate", "--prompts-json", "prompts.json", "--endpoint", server.url], tmp_path)
    finally:
        server.stop()
    assert result.exit_code == 1
    error = one_json(result)["error"]
    assert error.startswith("Generation failed for 1 prompts: boat: generator failed: ")
    assert "generate: item boat failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["apple.js", "cactus.js"]


@pytest.mark.parametrize("command", ["generate", "render"])
def test_ctrl_c_prints_the_interrupted_json_and_exits_130(tmp_path, command):
    """D18: render too exits 130. The services wait, so the run is mid-stage when interrupted."""
    if command == "generate":
        server = start_generator(warmup=60)
        prompts(tmp_path)
        argv = ["generate", "--prompts-json", "prompts.json", "--endpoint", server.url]
    else:
        server = start_renderer(init_delay=60)
        (tmp_path / "js").mkdir()
        (tmp_path / "js" / "a.js").write_text("export default function generate(THREE) { return new THREE.Group(); }\n")
        argv = ["render", "--data-dir", "js", "--endpoint", server.url]
    try:
        process = subprocess.Popen([CLASSIC, *argv], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ})
        wait_for_event(tmp_path, "stage_started")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        server.stop()
    assert process.returncode == 130, err
    assert out == json.dumps({"success": False, "error": "Interrupted by user"}) + "\n"
