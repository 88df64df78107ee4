"""The offline quick start end to end, and the reports it writes."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import MANIFESTS, ROOT


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(MANIFESTS, folder / "manifests")
    from conftest import run_cli

    result = run_cli(["manifests/quickstart.yaml"], cwd=folder)  # the README's command
    return folder, result


def test_the_quick_start_runs_offline_and_ends_with_the_report(quickstart):
    folder, result = quickstart
    assert result.exit_code == 0, result.stdout + result.stderr
    html_path = folder / "manifests/out/report/report.html"
    assert result.stdout.splitlines()[-1] == f"open {html_path}"
    assert html_path.is_file()


def test_report_json_follows_its_schema(quickstart):
    folder, _ = quickstart
    report = json.loads((folder / "manifests/out/report/report.json").read_text())
    schema = json.loads((ROOT / "schemas/report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(report)
    assert report["match"]["qualifies"] and report["match"]["duels"] == 8
    assert report["provenance"]["rules_preset"] == "404-cli" and report["provenance"]["seed"] == 42


def test_summary_and_junit_are_pinned(quickstart, snapshot):
    folder, _ = quickstart
    out = folder / "manifests/out/report"
    assert (out / "summary.md").read_text() == snapshot(name="summary.md")
    assert (out / "junit.xml").read_text() == snapshot(name="junit.xml")


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.ids = [], [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag in ("a", "link"):
            self.links.append(attrs.get("href", ""))
        elif tag == "script" and "src" in attrs:
            self.scripts.append(attrs["src"])


def test_the_html_is_self_contained(quickstart):
    folder, _ = quickstart
    page = _Page()
    page.feed((folder / "manifests/out/report/report.html").read_text())
    assert len(page.images) == 3 * 8  # the prompt and both grids of every duel
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    assert page.scripts == []
    assert all(link.startswith("#") and link[1:] in page.ids for link in page.links)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_html_renders_in_headless_chromium(quickstart, tmp_path):
    folder, _ = quickstart
    page = folder / "manifests/out/report/report.html"
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'id="duel-apple"' in done.stdout
    console_errors = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert console_errors == []


def test_fail_below_gates_ci_and_keeps_failing_on_reruns(quickstart, cli):
    folder, _ = quickstart
    for _ in range(2):
        result = cli(["run", "manifests/quickstart.yaml", "--set", "stages.report.fail_below=0.9"], cwd=folder)
        assert result.exit_code == 1
        assert "margin +0.750 is below fail_below +0.900" in result.stdout
    assert cli(["run", "manifests/quickstart.yaml"], cwd=folder).exit_code == 0


def test_report_command_from_a_judge_folder_and_from_the_manifest(quickstart, cli, tmp_path):
    folder, _ = quickstart
    result = cli(["report", "manifests/out/duel", "-o", str(tmp_path / "again")], cwd=folder)
    assert result.exit_code == 0, result.stderr
    assert sorted(Path(p).name for p in result.stdout.split()) == ["junit.xml", "report.html", "report.json",
                                                                     "summary.md"]
    again = json.loads((tmp_path / "again/report.json").read_text())
    assert again["match"] == json.loads((folder / "manifests/out/report/report.json").read_text())["match"]
    assert cli(["report", "manifests/quickstart.yaml"], cwd=folder).exit_code == 0
    missing = cli(["report", str(tmp_path)], cwd=folder)
    assert missing.exit_code == 1
    assert missing.stderr == f"404-run: error: no duels.json in {tmp_path}: run the judge stage first\n"
