"""Competition files from a folder, a file:// URL and loopback HTTP; every error message."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner404.chain.codec import RevealWindow
from runner404.chain.competition import (COMPETITION_URL_ENV, DEFAULT_COMPETITION_URL,
                                         Competition, CompetitionConfig, CompetitionError,
                                         CompetitionState, Schedule, competition_base)
from runner404.errors import ExitCode, UsageError

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "competition"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class _Slow(_Quiet):
    def do_GET(self) -> None:
        time.sleep(1.0)
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that gave up (timeout)
        pass


def _serve(directory: Path, handler=_Quiet) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = _Server(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server, url = _serve(FIXTURE.parent)
    yield url + "/competition"
    server.shutdown()
    server.server_close()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture competition."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "competition"))


def _check_fixture(comp: Competition) -> None:
    assert comp.state() == CompetitionState(current_round=24, stage="open", next_stage_eta=None)
    assert comp.schedule(24) == Schedule(8582366, 8603965, 8605165)
    assert comp.schedule(23) == Schedule(8560767, 8582365, 8583565)
    assert comp.seed(24) == 314159265
    prompts = comp.prompts(24)
    assert len(prompts) == 6
    for url in prompts:
        stem = url.rsplit("/", 1)[1].split(".")[0]
        assert url.startswith("https://sn12domain.org/procgen/") and len(stem) == 64
        int(stem, 16)
    config = comp.config()
    assert config == CompetitionConfig(
        name="threejs", first_evaluation_date="2026-04-29", generation_stage_minutes=240,
        win_margin=0.07, weight_decay=0.2, weight_floor=0.2, prompts_per_round=128,
        carryover_prompts=32, round_duration_days=3, round_start_time="08:00:00", audit_repeats=3)
    assert config.raw["name"] == "threejs"
    assert comp.window(25) == RevealWindow(8603966, None)
    assert comp.window(23) == RevealWindow(8560767, 8582365)


def test_from_a_folder():
    _check_fixture(Competition(str(FIXTURE)))
    _check_fixture(Competition(FIXTURE))


def test_from_a_file_url():
    _check_fixture(Competition(FIXTURE.as_uri()))
    _check_fixture(Competition(FIXTURE.as_uri() + "/"))


def test_from_http_on_loopback(http_base):
    _check_fixture(Competition(http_base))
    _check_fixture(Competition(http_base + "/"))


def test_the_prompts_of_round_24_carry_one_over_from_round_23():
    comp = Competition(FIXTURE)
    assert comp.prompts(24)[0] in comp.prompts(23)
    assert comp.seed(23) != comp.seed(24)


# --- the base ---------------------------------------------------------------------------------

def test_competition_base_precedence():
    assert competition_base(None, {}) == DEFAULT_COMPETITION_URL
    assert DEFAULT_COMPETITION_URL == \
        "https://raw.githubusercontent.com/404-Repo/404-active-competition/main"
    env = {COMPETITION_URL_ENV: "http://mirror.example/comp/"}
    assert competition_base(None, env) == "http://mirror.example/comp"
    assert competition_base("/data/comp", env) == "/data/comp"
    assert competition_base("", env) == "http://mirror.example/comp"
    assert competition_base("  ", {COMPETITION_URL_ENV: ""}) == DEFAULT_COMPETITION_URL
    assert COMPETITION_URL_ENV == "RUNNER404_COMPETITION_URL"


def test_competition_base_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv(COMPETITION_URL_ENV, "file:///srv/comp")
    assert competition_base() == "file:///srv/comp"


def test_default_competition_is_the_public_repository():
    assert Competition().url("state.json") == DEFAULT_COMPETITION_URL + "/state.json"


def test_unsupported_schemes_are_usage_errors():
    with pytest.raises(UsageError, match="Unsupported competition URL: ftp://x/y"):
        Competition("ftp://x/y")
    with pytest.raises(UsageError, match="remote host"):
        Competition("file://server/share")


# --- fetch errors -----------------------------------------------------------------------------

def test_missing_folder_file(tmp_path):
    comp = Competition(tmp_path)
    with pytest.raises(CompetitionError) as err:
        comp.state()
    assert str(err.value) == \
        f"Failed to fetch state.json from {tmp_path / 'state.json'}: No such file or directory"
    assert err.value.exit_code == ExitCode.FAILED


def test_missing_file_url_file(tmp_path):
    comp = Competition(tmp_path.as_uri())
    with pytest.raises(CompetitionError) as err:
        comp.schedule(99)
    assert str(err.value) == (f"Failed to fetch schedule.json from "
                              f"{tmp_path.as_uri()}/rounds/99/schedule.json: No such file or directory")


def test_http_404(http_base):
    comp = Competition(http_base)
    with pytest.raises(CompetitionError) as err:
        comp.schedule(99)
    assert str(err.value) == (f"Failed to fetch schedule.json from {http_base}/rounds/99/"
                              "schedule.json: HTTP 404 File not found")
    with pytest.raises(CompetitionError, match=r"^Failed to fetch state.json from .*/nothing/state.json: HTTP 404"):
        Competition(http_base + "/nothing").state()


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    comp = Competition(f"http://127.0.0.1:{port}")
    with pytest.raises(CompetitionError) as err:
        comp.state()
    assert str(err.value).startswith(f"Failed to fetch state.json from http://127.0.0.1:{port}/"
                                     "state.json: ConnectError: ")


def test_timeout(copy):
    server, url = _serve(copy, _Slow)
    try:
        with pytest.raises(CompetitionError) as err:
            Competition(url, timeout=0.2).state()
    finally:
        server.shutdown()
        server.server_close()
    assert str(err.value) == f"Failed to fetch state.json from {url}/state.json: timed out after 0.2 s"


def test_default_timeout_is_10_seconds():
    assert Competition("http://127.0.0.1:1").timeout == 10.0


def test_non_json_body_is_a_fetch_error(copy):
    (copy / "state.json").write_text("<html>rate limited</html>")
    with pytest.raises(CompetitionError) as err:
        Competition(copy).state()
    assert str(err.value) == (f"Failed to fetch state.json from {copy / 'state.json'}: "
                              "Expecting value: line 1 column 1 (char 0)")


def test_a_folder_instead_of_a_file(copy):
    (copy / "rounds" / "30" / "schedule.json").mkdir(parents=True)
    with pytest.raises(CompetitionError, match=r"^Failed to fetch schedule.json from .*: Is a directory$"):
        Competition(copy).schedule(30)


# --- parse errors -----------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "why"), [
    ({"stage": "open"}, "current_round: field required"),
    ({"current_round": "24", "stage": "open"}, "current_round: expected an integer, got '24'"),
    ({"current_round": True, "stage": "open"}, "current_round: expected an integer, got True"),
    ({"current_round": 24.0, "stage": "open"}, "current_round: expected an integer, got 24.0"),
    ({"current_round": -1, "stage": "open"}, "current_round: must be ≥ 0, got -1"),
    ({"current_round": 24}, "stage: field required"),
    ({"current_round": 24, "stage": 3}, "stage: expected a string, got 3"),
    ([24, "open"], "expected a JSON object, got list"),
])
def test_state_parse_errors(copy, content, why):
    (copy / "state.json").write_text(json.dumps(content))
    with pytest.raises(CompetitionError) as err:
        Competition(copy).state()
    assert str(err.value) == f"Failed to parse state.json: {why}"


def test_state_extra_keys_are_ignored_and_stage_kept(copy):
    (copy / "state.json").write_text(json.dumps(
        {"current_round": 3, "stage": "duels", "next_stage_eta": "2026-05-01T08:00:00Z", "x": 1}))
    assert Competition(copy).state() == CompetitionState(3, "duels", "2026-05-01T08:00:00Z")


@pytest.mark.parametrize(("content", "why"), [
    ({"latest_reveal_block": 5}, "earliest_reveal_block: field required"),
    ({"earliest_reveal_block": 5}, "latest_reveal_block: field required"),
    ({"earliest_reveal_block": "5", "latest_reveal_block": 9},
     "earliest_reveal_block: expected an integer, got '5'"),
    ({"earliest_reveal_block": 5, "latest_reveal_block": 9.5},
     "latest_reveal_block: expected an integer, got 9.5"),
    ({"earliest_reveal_block": 9, "latest_reveal_block": 5},
     "latest_reveal_block 5 is before earliest_reveal_block 9"),
    ({"earliest_reveal_block": 1, "latest_reveal_block": 5, "generation_deadline_block": "x"},
     "generation_deadline_block: expected an integer, got 'x'"),
])
def test_schedule_parse_errors(copy, content, why):
    (copy / "rounds" / "24" / "schedule.json").write_text(json.dumps(content))
    with pytest.raises(CompetitionError) as err:
        Competition(copy).schedule(24)
    assert str(err.value) == f"Failed to parse schedule.json: {why}"


def test_schedule_without_deadline_is_fine(copy):
    (copy / "rounds" / "24" / "schedule.json").write_text(
        json.dumps({"earliest_reveal_block": 1, "latest_reveal_block": 1, "extra": True}))
    assert Competition(copy).schedule(24) == Schedule(1, 1, None)


@pytest.mark.parametrize(("content", "why"), [
    ({}, "seed: field required"),
    ({"seed": 2**32}, "seed: must be a 32-bit unsigned integer, got 4294967296"),
    ({"seed": -1}, "seed: must be ≥ 0, got -1"),
    ({"seed": "7"}, "seed: expected an integer, got '7'"),
])
def test_seed_parse_errors(copy, content, why):
    (copy / "rounds" / "24" / "seed.json").write_text(json.dumps(content))
    with pytest.raises(CompetitionError) as err:
        Competition(copy).seed(24)
    assert str(err.value) == f"Failed to parse seed.json: {why}"


@pytest.mark.parametrize(("content", "why"), [
    ({"win_margin": "0.07"}, "win_margin: expected a number, got '0.07'"),
    ({"prompts_per_round": 1.5}, "prompts_per_round: expected an integer, got 1.5"),
    ({"name": 1}, "name: expected a string, got 1"),
    ({"audit_repeats": 0}, "audit_repeats: must be ≥ 1, got 0"),
])
def test_config_parse_errors(copy, content, why):
    (copy / "config.json").write_text(json.dumps(content))
    with pytest.raises(CompetitionError) as err:
        Competition(copy).config()
    assert str(err.value) == f"Failed to parse config.json: {why}"


def test_config_audit_repeats(copy):
    (copy / "config.json").write_text(json.dumps({"audit_repeats": 5}))
    assert Competition(copy).config().audit_repeats == 5


def test_prompts_skip_blank_lines_and_reject_bad_utf8(copy):
    path = copy / "rounds" / "24" / "prompts.txt"
    path.write_text("\n  https://a/x.png  \n\nhttps://a/y.png\n")
    assert Competition(copy).prompts(24) == ["https://a/x.png", "https://a/y.png"]
    path.write_bytes(b"https://a/\xff.png\n")
    with pytest.raises(CompetitionError, match="^Failed to parse prompts.txt: "):
        Competition(copy).prompts(24)


def test_round_numbers_are_checked():
    for bad in (-1, "24", 2.0, None):
        with pytest.raises(UsageError):
            Competition(FIXTURE).schedule(bad)  # type: ignore[arg-type]
