"""The vLLM judge stand-in over loopback HTTP: runner404.sim.vlm."""

from __future__ import annotations

import base64
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jsonschema
import pytest

from conftest import stop_process
from standin_fixtures import standin_fixtures

from runner404 import png
from runner404.pods.presets import JUDGE_ARGS, JUDGE_IMAGE
from runner404.sim import services
from runner404.sim.vlm import parse_features, start_vlm

MODEL = "glm-4.6v-flash"
WHITE, GRAY = (255, 255, 255), (128, 128, 128)
RED, DARK_RED, BLUE, GREEN = (200, 40, 30), (150, 30, 22), (30, 50, 200), (40, 170, 60)

# judge.md section 5, written out independently of the module under test.
PENALTY = {"type": "object", "required": ["penalty_1", "penalty_2", "issues"], "additionalProperties": False,
           "properties": {"penalty_1": {"type": "integer", "minimum": 0, "maximum": 10},
                          "penalty_2": {"type": "integer", "minimum": 0, "maximum": 10},
                          "issues": {"type": "string"}}}
CHECKLIST = {"type": "object", "required": ["main_object", "features"], "additionalProperties": False,
             "properties": {"main_object": {"type": "string", "minLength": 1},
                            "features": {"type": "array", "minItems": 4, "maxItems": 7, "items": {
                                "type": "object", "required": ["description", "category"],
                                "additionalProperties": False,
                                "properties": {"description": {"type": "string", "minLength": 1},
                                               "category": {"enum": ["count", "shape", "presence",
                                                                     "material_color"]}}}}}}
VERIFICATION = {"type": "object", "required": ["checks", "main_object_correct"], "additionalProperties": False,
                "properties": {"checks": {"type": "array", "items": {
                    "type": "object", "required": ["feature", "match", "note"], "additionalProperties": False,
                    "properties": {"feature": {"type": "string"}, "match": {"enum": ["yes", "partial", "no"]},
                                   "note": {"type": "string"}}}},
                    "main_object_correct": {"type": "boolean"}}}
SIDE_GUARD = {"type": "object", "required": ["verdict", "reason"], "additionalProperties": False,
              "properties": {"verdict": {"enum": ["ok", "garbage"]}, "reason": {"type": "string"}}}
ISSUES = {"type": "object", "required": ["issues"], "additionalProperties": False,
          "properties": {"issues": {"type": "string"}}}
PENALTY_LABELS = ("s1_prompt_match", "s2bv_ab", "s2bv_ba", "s2ac_ab", "s2ac_ba", "s3_gray_ab", "s3_gray_ba")


def picture(bg: tuple[int, int, int], fg: tuple[int, int, int] | None = None, size: int = 48,
            box: tuple[int, int, int, int] = (12, 12, 36, 36)) -> bytes:
    """A PNG: background `bg` with a filled rectangle of `fg` (x0, y0, x1, y1)."""
    pixels = bytearray(bytes(bg) * (size * size))
    if fg is not None:
        x0, y0, x1, y1 = box
        for y in range(y0, y1):
            pixels[(y * size + x0) * 3:(y * size + x1) * 3] = bytes(fg) * (x1 - x0)
    return png.encode(size, size, bytes(pixels))


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


PROMPT = data_url(picture(WHITE, RED))
RED_RENDER = data_url(picture(WHITE, DARK_RED, box=(8, 10, 40, 30)))
BLUE_RENDER = data_url(picture(WHITE, BLUE))
GRAY_RED = data_url(picture(GRAY, RED))
GRAY_BLUE = data_url(picture(GRAY, BLUE))
EMPTY = data_url(picture(WHITE))


def grid_of(fg: tuple[int, int, int]) -> str:
    """A 2x2 grid like /render/grid: four white tiles with a square each, black gutters."""
    tile, gap = 40, 4
    size = 2 * tile + gap
    pixels = bytearray(bytes((0, 0, 0)) * (size * size))
    for row in range(size):
        for col in range(size):
            ty, tx = divmod(row, tile + gap)[1], divmod(col, tile + gap)[1]
            if ty < tile and tx < tile:
                colour = fg if 10 <= ty < 30 and 12 <= tx < 28 else WHITE
                pixels[(row * size + col) * 3:(row * size + col) * 3 + 3] = bytes(colour)
    return data_url(png.encode(size, size, bytes(pixels)))


def body(label: str, images: list[str], text: str = "Compare.", *, seed: int | None = 100,
         temperature: float = 0.0, model: str = MODEL, max_tokens: int = 1024, schema: dict | None = None) -> dict:
    content: list[dict] = [{"type": "text", "text": "Reference image (target object):"}]
    content += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    content.append({"type": "text", "text": text})
    payload = {"model": model, "messages": [{"role": "system", "content": "Reply with valid JSON only."},
                                            {"role": "user", "content": content}],
               "response_format": {"type": "json_schema",
                                   "json_schema": {"name": f"{label}-response", "schema": schema or {}}},
               "temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        payload["seed"] = seed
    return payload


def chat(client: httpx.Client, label: str, images: list[str], text: str = "Compare.", **kw) -> httpx.Response:
    return client.post("/v1/chat/completions", json=body(label, images, text, **kw))


def content_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["object"] == "chat.completion" and payload["model"] == MODEL
    assert isinstance(payload["created"], int) and payload["id"].startswith("chatcmpl-")
    (choice,) = payload["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert set(payload["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    return choice["message"]["content"]


def reply(client: httpx.Client, label: str, images: list[str], text: str = "Compare.", **kw) -> dict:
    response = chat(client, label, images, text, **kw)
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    return json.loads(content_of(response))


def repair(text: str) -> dict:
    """The judge's parse-or-repair (judge.md section 4), enough to read the faulted replies."""
    candidates = [text.strip()]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        candidates.append(fence.group(1).strip())
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{"):text.rindex("}") + 1])
    for candidate in candidates:
        for variant in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
            try:
                return json.loads(variant)
            except json.JSONDecodeError:
                continue
    raise ValueError(f"unrepairable: {text!r}")


def checklist_text(main_object: str, features: list[dict]) -> str:
    lines = [f"  {i}. [{f['category']}] {f['description']}" for i, f in enumerate(features, 1)]
    return "3D model (4 views, 2x2 grid):\nMain object: " + main_object + "\nChecklist:\n" + "\n".join(lines)


server, client, started = standin_fixtures(start_vlm)


# -- health and models ----------------------------------------------------------------------

def test_health_is_503_during_warmup_then_200(started):
    srv = started(warmup=0.4)
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        early = c.get("/health")
        assert early.status_code == 503 and early.content == b""
        time.sleep(0.45)
        ready = c.get("/health")
        assert ready.status_code == 200 and ready.content == b""


def test_models_lists_the_served_name(client):
    response = client.get("/v1/models")
    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "list"
    assert [(m["id"], m["object"]) for m in payload["data"]] == [(MODEL, "model")]


def test_unknown_route_and_wrong_method(client):
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/chat/completions").status_code == 405


# -- replies computed from the images ------------------------------------------------------

@pytest.mark.parametrize("label", PENALTY_LABELS)
def test_matching_colour_gets_the_lower_penalty(client, label):
    ab = reply(client, label, [PROMPT, RED_RENDER, BLUE_RENDER])
    ba = reply(client, label, [PROMPT, BLUE_RENDER, RED_RENDER])
    jsonschema.validate(ab, PENALTY)
    assert ab["penalty_1"] < ab["penalty_2"] and ab["penalty_1"] <= 2 and ab["penalty_2"] >= 8
    assert ba["penalty_2"] < ba["penalty_1"]
    assert "blue" in ab["issues"] and "red" in ab["issues"]


def test_gray_background_renders_are_judged_by_their_colours(client):
    result = reply(client, "s3_gray_ab", [PROMPT, GRAY_BLUE, GRAY_RED], seed=107)
    assert result["penalty_2"] < result["penalty_1"]


def test_empty_render_gets_the_maximum_penalty(client):
    result = reply(client, "s1_prompt_match", [PROMPT, EMPTY, RED_RENDER])
    assert result["penalty_1"] == 10 and result["penalty_2"] <= 2


def test_same_request_same_reply(client):
    for kw in ({"seed": 100, "temperature": 0.0}, {"seed": 103, "temperature": 0.2}):
        first = content_of(chat(client, "s1_prompt_match", [PROMPT, RED_RENDER, data_url(picture(WHITE, GREEN))],
                                **kw))
        again = content_of(chat(client, "s1_prompt_match", [PROMPT, RED_RENDER, data_url(picture(WHITE, GREEN))],
                                **kw))
        assert first == again


def test_every_label_replies_in_its_schema(client):
    decompose = reply(client, "s2cl_decompose", [PROMPT])
    jsonschema.validate(decompose, CHECKLIST)
    verify = reply(client, "s2cl_verify", [PROMPT, grid_of(RED)],
                   checklist_text(decompose["main_object"], decompose["features"]))
    jsonschema.validate(verify, VERIFICATION)
    jsonschema.validate(reply(client, "s4_per_angle", [RED_RENDER, RED_RENDER]), SIDE_GUARD)
    jsonschema.validate(reply(client, "explain", [PROMPT, grid_of(RED), grid_of(BLUE)]), ISSUES)
    for label in PENALTY_LABELS:
        jsonschema.validate(reply(client, label, [PROMPT, RED_RENDER, GRAY_BLUE]), PENALTY)


def test_decompose_names_the_prompt_colours(client):
    decompose = reply(client, "s2cl_decompose", [data_url(picture(WHITE, BLUE, box=(4, 20, 44, 30)))])
    assert "blue" in decompose["main_object"]
    colours = [f for f in decompose["features"] if f["category"] == "material_color"]
    assert colours and "blue" in colours[0]["description"]
    assert any("wider than tall" in f["description"] for f in decompose["features"])
    assert reply(client, "s2cl_decompose", [data_url(picture(WHITE, BLUE, box=(4, 20, 44, 30)))]) == decompose


def test_verify_checks_the_listed_features(client):
    features = [{"category": "material_color", "description": "predominantly red body"},
                {"category": "material_color", "description": "bright blue handle"},
                {"category": "count", "description": "exactly two legs"},
                {"category": "shape", "description": "rounded top edge"}]
    text = checklist_text("red mug", features)
    assert parse_features([text]) == [(f["category"], f["description"]) for f in features]
    red = reply(client, "s2cl_verify", [PROMPT, grid_of(RED)], text)
    assert [c["feature"] for c in red["checks"]] == [f["description"] for f in features]
    assert [c["match"] for c in red["checks"]] == ["yes", "no", "yes", "yes"]
    assert red["main_object_correct"] is True
    blue = reply(client, "s2cl_verify", [PROMPT, grid_of(BLUE)], text)
    assert [c["match"] for c in blue["checks"]] == ["no", "yes", "no", "no"]
    assert blue["main_object_correct"] is False
    for check in red["checks"] + blue["checks"]:
        assert 3 <= len(check["note"].split()) <= 8
    assert reply(client, "s2cl_verify", [PROMPT, grid_of(RED)], "no checklist here")["checks"] == []


def test_side_guard_flags_an_empty_side_view(client):
    assert reply(client, "s4_per_angle", [RED_RENDER, EMPTY])["verdict"] == "garbage"
    assert reply(client, "s4_per_angle", [RED_RENDER, data_url(picture(GRAY))])["verdict"] == "garbage"
    assert reply(client, "s4_per_angle", [RED_RENDER, BLUE_RENDER])["verdict"] == "ok"
    tiny = data_url(picture(WHITE, RED, size=96, box=(40, 40, 46, 46)))  # 0.4 %: small, not missing
    assert reply(client, "s4_per_angle", [tiny, tiny])["verdict"] == "ok"


def test_explain_names_both_sides(client):
    issues = reply(client, "explain", [PROMPT, grid_of(BLUE), grid_of(RED)])["issues"]
    assert issues.startswith("Model A") and "model B" in issues and "blue" in issues


def test_unknown_label_gets_the_smallest_reply_of_its_schema(client):
    schema = {"type": "object", "required": ["score", "tags", "ok"], "$defs": {"Tag": {"enum": ["a", "b"]}},
              "properties": {"score": {"type": "integer", "minimum": 1},
                             "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "minItems": 1},
                             "ok": {"type": "boolean"}}}
    result = reply(client, "something_else", [PROMPT], schema=schema)
    jsonschema.validate(result, schema)
    assert reply(client, "something_else", [PROMPT]) == {}


def test_unreadable_images_give_neutral_replies(client):
    broken = "data:image/png;base64,bm90IGEgcG5n"
    assert reply(client, "s1_prompt_match", [PROMPT, broken, RED_RENDER]) == {
        "penalty_1": 5, "penalty_2": 5, "issues": "neutral: image 2 could not be read"}
    outside = "http://203.0.113.7/prompt.png"  # never fetched: the stand-in reads loopback only
    assert reply(client, "s4_per_angle", [outside, EMPTY])["verdict"] == "ok"
    verify = reply(client, "s2cl_verify", [PROMPT, broken],
                   checklist_text("red mug", [{"category": "shape", "description": "round"}]))
    assert verify["checks"] == [
        {"feature": "round", "match": "partial", "note": "image unreadable, cannot verify"}]
    assert reply(client, "s1_prompt_match", [PROMPT])["penalty_1"] == 5  # too few images


def test_http_image_urls_are_fetched_from_loopback(client):
    images = {"/prompt.png": picture(WHITE, RED), "/blue.png": picture(WHITE, BLUE)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = images.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args):
            pass

    cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=cdn.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{cdn.server_address[1]}"
        result = reply(client, "s1_prompt_match", [base + "/prompt.png", base + "/blue.png", RED_RENDER])
        assert result["penalty_1"] > result["penalty_2"]
        missing = reply(client, "s1_prompt_match", [base + "/missing.png", RED_RENDER, BLUE_RENDER])
        assert missing["issues"] == "neutral: image 1 could not be read"
    finally:
        cdn.shutdown()
        cdn.server_close()


def test_max_tokens_cuts_the_reply(client):
    response = chat(client, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER], max_tokens=5)
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert len(content_of(response)) == 20


def test_calls_are_counted_by_label(started):
    srv = started()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        for label in ("s1_prompt_match", "s1_prompt_match", "explain"):
            chat(c, label, [PROMPT, RED_RENDER, BLUE_RENDER])
        c.get("/health")
    assert srv.calls_by_label == {"s1_prompt_match": 2, "explain": 1}
    assert srv.stats.by_path == {"/v1/chat/completions": 3, "/health": 1}
    assert len(srv.spans) == 3


# -- script mode ----------------------------------------------------------------------------

def test_script_replies_are_consumed_in_order(started, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "s1_prompt_match": ["first", '{"penalty_1": 1, "penalty_2": 9, "issues": "x"}', "last"],
        "explain": [{"issues": "scripted"}],
        "s4_per_angle": [{"status": 500, "message": "boom"}, '{"verdict": "ok", "reason": "r"}'],
    }))
    srv = started(script=str(script))
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        got = [content_of(chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER])) for _ in range(4)]
        assert got == ["first", '{"penalty_1": 1, "penalty_2": 9, "issues": "x"}', "last", "last"]
        explained = content_of(chat(c, "explain", [PROMPT, RED_RENDER, BLUE_RENDER]))
        assert json.loads(explained) == {"issues": "scripted"}
        failed = chat(c, "s4_per_angle", [RED_RENDER, EMPTY])
        assert failed.status_code == 500 and failed.json()["error"]["message"] == "boom"
        assert content_of(chat(c, "s4_per_angle", [RED_RENDER, EMPTY])) == '{"verdict": "ok", "reason": "r"}'
        computed = reply(c, "s2bv_ab", [PROMPT, RED_RENDER, BLUE_RENDER])  # not scripted
        assert computed["penalty_1"] < computed["penalty_2"]


# -- knobs ----------------------------------------------------------------------------------

def test_malformed_replies_are_not_json(started):
    srv = started(malformed_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        text = content_of(chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER]))
    assert "{" not in text and "}" not in text
    with pytest.raises(ValueError):
        repair(text)


def test_fenced_replies(started):
    srv = started(fenced_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        text = content_of(chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER]))
    assert "```json\n" in text and not text.startswith("```") and not text.rstrip().endswith("```")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    jsonschema.validate(repair(text), PENALTY)


def test_trailing_comma_replies(started):
    srv = started(trailing_comma_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        text = content_of(chat(c, "s4_per_angle", [RED_RENDER, BLUE_RENDER]))
    assert text.endswith(",}")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert repair(text)["verdict"] == "ok"


def test_think_replies(started):
    srv = started(think_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        text = content_of(chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER]))
    assert text.startswith("<think>") and "</think>" in text
    after = text.split("</think>", 1)[1]
    assert after.strip()[0] != "{"  # prose before the JSON
    jsonschema.validate(repair(text), PENALTY)


def test_content_faults_are_drawn_per_request_not_per_arrival(started):
    requests = [body("s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER], seed=seed) for seed in range(24)]
    outcomes = []
    for order in (requests, list(reversed(requests))):
        srv = started(malformed_rate=0.5, seed=3)
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            seen = {r["seed"]: "{" not in content_of(c.post("/v1/chat/completions", json=r)) for r in order}
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert 0 < sum(outcomes[0].values()) < 24


def test_injected_5xx_only_on_completions(started):
    srv = started(fail_rate=1.0, fail_status=502)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        failed = chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER])
        assert failed.status_code == 502 and failed.json()["error"]["code"] == 502
        assert c.get("/health").status_code == 200
        assert c.get("/v1/models").status_code == 200
    assert srv.calls_by_label == {"s1_prompt_match": 1}


def test_dropped_connections(started):
    srv = started(drop_rate=1.0)
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        with pytest.raises(httpx.TransportError):
            chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER])
        assert c.get("/health").status_code == 200


def test_capacity_queues_extra_requests(started):
    srv = started(capacity=2, latency=0.2)
    results: list[int] = []
    lock = threading.Lock()

    def one(seed: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            status = chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER], seed=seed).status_code
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200] * 6
    assert srv.stats.peak_in_flight == 2
    assert srv.peak_waiting >= 1
    assert len(srv.spans) == 6
    for i, (s1, e1) in enumerate(srv.spans):  # never more than 2 processed at any instant
        assert sum(1 for s2, e2 in srv.spans if s2 <= s1 < e2) <= 2, i
    assert srv.stats.busy_seconds >= 6 * 0.2  # each request held its slot for the latency


# -- request validation ---------------------------------------------------------------------

def test_wrong_model_is_404(client):
    response = chat(client, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER], model="gpt-4o")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "NotFoundError" and error["code"] == 404 and "gpt-4o" in error["message"]


@pytest.mark.parametrize("payload", [
    b"{not json",
    b"[1, 2]",
    json.dumps({"model": MODEL}).encode(),
    json.dumps({"model": MODEL, "messages": []}).encode(),
    json.dumps({"model": MODEL, "messages": ["hello"]}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": 3}]}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text"}]}]}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": "1"}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}).encode(),
    json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "xml"}}).encode(),
])
def test_malformed_request_is_400(client, payload):
    response = client.post("/v1/chat/completions", content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == 400


# -- command line and Targon backing --------------------------------------------------------

def test_command_line_vlm():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "runner404.sim", "vlm", "--port", "0", "--think-rate", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "no output from the VLM stand-in"
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        assert int(url.rsplit(":", 1)[1]) > 0
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get("/health").status_code == 200
            text = content_of(chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER]))
            assert text.startswith("<think>")
    finally:
        stop_process(proc)


def test_targon_backing_for_the_vllm_image():
    factory = services.service_for_image(JUDGE_IMAGE)
    assert factory is services.service_for_image("runner404-sim/vlm:latest")
    server = factory(list(JUDGE_ARGS), {}, services.ServiceKnobs(options={"vlm_fenced_rate": 1.0}))
    server.start()
    try:
        assert server.capacity == 32  # --max-num-seqs
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.get("/health").status_code == 200
            assert c.get("/v1/models").json()["data"][0]["id"] == MODEL
            text = content_of(chat(c, "s1_prompt_match", [PROMPT, RED_RENDER, BLUE_RENDER]))
            assert "```json" in text and repair(text)["penalty_1"] < repair(text)["penalty_2"]
    finally:
        server.stop()
    other = factory(["some/model", "--served-model-name", "judge-x"], {}, services.ServiceKnobs(health_delay=5))
    try:
        assert other.model == "judge-x" and other.warmup == 5 and other.capacity == 0
    finally:
        other.server_close()
    with pytest.raises(ValueError, match="vlm_bogus"):
        factory([], {}, services.ServiceKnobs(options={"vlm_bogus": 1}))
