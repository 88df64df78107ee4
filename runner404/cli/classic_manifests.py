"""The one-step manifests of the classic commands (plain dicts) and how their results read.

Paths stay as the user gave them (relative to the working directory), so `--print-manifest`
output can be saved in that folder and run with `404-run`. The pods keep the classic names
(`generator`, `render`, `judge`) and constants (runner404.pods.presets); an `--endpoint` becomes
an endpoint pod. Secrets are references only: the Targon key is handed to the run through the
environment variable the manifest names.
"""

from __future__ import annotations

import json
from typing import Any

from runner404.cli import classic_checks as checks
from runner404.cli.classic_runner import TARGON_KEY_ENV, ClassicCommand, Finished
from runner404.cli.environment import Environment
from runner404.pods.presets import JUDGE_IMAGE, RENDERER_IMAGE

STATE = ".runner404/classic"  # where chain commands keep their stage outputs (commit.json, ...)
ENDPOINT_HEALTH = {"path": "/health", "timeout": "5m"}  # an already running service: fail fast


def _base(command: str, description: str) -> dict[str, Any]:
    return {"version": 1, "name": f"404-cli-{command}", "description": description}


def _targon(data: dict[str, Any], targon_url: str | None) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "targon", "api_key": "${{ secrets.targon }}"}
    if targon_url:
        provider["base_url"] = targon_url
    data["secrets"] = {"targon": {"env": TARGON_KEY_ENV}}
    data["provider"] = provider
    return data


# -- start-* -----------------------------------------------------------------------------------

def _container_url(done: Finished) -> dict[str, Any]:
    kept = done.first("pod_kept") or done.first("pod_ready") or {}
    return {"success": True, "container_url": kept.get("url")}


def start_pod(command: str, pod_id: str, pod: dict[str, Any], api_key: str, targon_url: str | None,
              what: str) -> ClassicCommand:
    data = _targon(_base(command, f"Start the classic {what} pod on Targon and keep it running."), targon_url)
    data["pods"] = {pod_id: {**pod, "keep": True}}
    data["stages"] = {command: {"uses": "pod", "pod": pod_id}}

    def prepare(env: Environment) -> None:
        env.err(f"Starting {what}: {pod['image']}")

    return ClassicCommand(command, data, _container_url, prepare, secrets={TARGON_KEY_ENV: api_key},
                          targon_url=targon_url, redo=True)


def start_generator(image_url: str, api_key: str, targon_url: str | None) -> ClassicCommand:
    pod = {"preset": "generator", "name": "generator", "image": image_url, "resource": "h200-large", "port": 10006}
    return start_pod("start-generator", "generator", pod, api_key, targon_url, "generator")


def start_renderer(api_key: str, targon_url: str | None) -> ClassicCommand:
    pod = {"preset": "renderer", "name": "render", "image": RENDERER_IMAGE, "resource": "cpu-small", "port": 8000}
    return start_pod("start-renderer", "render", pod, api_key, targon_url, "renderer")


def start_judge(api_key: str, targon_url: str | None, resource: str) -> ClassicCommand:
    pod = {"preset": "judge", "name": "judge", "image": JUDGE_IMAGE, "resource": resource, "port": 8000}
    return start_pod("start-judge", "judge", pod, api_key, targon_url, "judge")


# -- stop-pods ---------------------------------------------------------------------------------

def stop_pods(api_key: str, targon_url: str | None) -> ClassicCommand:
    data = _targon(_base("stop-pods", "Delete the classic pods (generator, render, judge) on Targon."), targon_url)
    data["stages"] = {"stop-pods": {"uses": "stop-pods", "names": ["generator", "render", "judge"]}}

    def prepare(env: Environment) -> None:
        env.err("Stopping pods...")

    def result(done: Finished) -> dict[str, Any]:
        stopped = [{"name": e["name"], "uid": e["uid"]} for e in done.events if e["event"] == "pod_deleted"]
        return {"success": True, "stopped": stopped}

    return ClassicCommand("stop-pods", data, result, prepare, secrets={TARGON_KEY_ENV: api_key},
                          targon_url=targon_url, redo=True)


# -- generate / render / judge -----------------------------------------------------------------

def _prompts_check(prompts_json: str, *, seed_given: bool, judge: bool = False):
    def check(env: Environment) -> int:
        return checks.check_prompts(env.path(prompts_json), prompts_json, seed_given=seed_given, judge=judge)

    return check


def generate(prompts_json: str, endpoint: str, seed: str | None, output_folder: str) -> ClassicCommand:
    seed_value = checks.parse_seed(seed)
    url = checks.endpoint_url(endpoint)
    data = _base("generate", "Generate one .js per prompt on a running generator (classic 404-cli generate).")
    data["pods"] = {"generator": {"preset": "generator", "url": url, "health": dict(ENDPOINT_HEALTH)}}
    data["prompts"] = {"prompts": {"file": prompts_json}}
    stage: dict[str, Any] = {"uses": "generate", "pod": "generator", "prompts": "prompts"}
    if seed_value is not None:
        stage["seed"] = seed_value
    stage["output"] = output_folder
    data["stages"] = {"generate": stage}
    check = _prompts_check(prompts_json, seed_given=seed_value is not None)

    def prepare(env: Environment) -> None:
        env.err("Reading prompts from JSON file...")
        env.err(f"Found {check(env)} prompts to process")

    return ClassicCommand("generate", data, lambda done: {"success": True}, prepare,
                          failure="Generation failed for {n} prompts")


def render(data_dir: str, endpoint: str, output_dir: str, concurrency: int) -> ClassicCommand:
    url = checks.endpoint_url(endpoint)
    data = _base("render", "Render every .js of a folder to white and gray views and a grid (classic 404-cli render).")
    data["pods"] = {"render": {"preset": "renderer", "url": url, "health": dict(ENDPOINT_HEALTH)}}
    data["stages"] = {"render": {"uses": "render", "pod": "render", "input": data_dir, "output": output_dir,
                                 "concurrency": concurrency}}

    def prepare(env: Environment) -> None:
        env.err(f"Rendering {data_dir} with endpoint {url}")
        folder = env.path(data_dir)
        if not folder.is_dir() or not any(folder.glob("*.js")):
            raise checks.ClassicError(f"No .js files found in {data_dir}. This service expects JavaScript "
                                      "source and JSON body {'source': ...}.")

    return ClassicCommand("render", data, lambda done: {"success": True, "output_dir": output_dir}, prepare,
                          failure="Rendering failed for {n} file(s)")


def judge(prompts_json: str, image_dir_1: str, image_dir_2: str, endpoint: str, seed: str, output_dir: str,
          concurrency: int) -> ClassicCommand:
    seed_value = checks.parse_seed(seed)
    url = checks.judge_endpoint(endpoint)
    data = _base("judge", "Judge two rendered sets duel by duel with the classic VLM procedure (classic 404-cli judge).")
    data["pods"] = {"judge": {"preset": "judge", "url": url, "health": dict(ENDPOINT_HEALTH)}}
    data["prompts"] = {"prompts": {"file": prompts_json}}
    data["stages"] = {"judge": {"uses": "judge", "pod": "judge", "prompts": "prompts", "seed": seed_value,
                                "left": image_dir_1, "right": image_dir_2, "rules": "404-cli",
                                "concurrency": concurrency, "output": output_dir}}
    check = _prompts_check(prompts_json, seed_given=True, judge=True)

    def prepare(env: Environment) -> None:
        env.err(f"Judging {prompts_json} with endpoint {url}")
        check(env)

    return ClassicCommand("judge", data, lambda done: {"success": True, "output_dir": output_dir}, prepare,
                          failure="Judging failed for {n} duel(s)")


# -- chain -------------------------------------------------------------------------------------

def _chain_stage(kind: str, network: str, netuid: int, competition_url: str | None, output: str) -> dict[str, Any]:
    stage: dict[str, Any] = {"uses": kind, "output": output, "network": network, "netuid": netuid}
    if competition_url:
        stage["competition_url"] = competition_url
    return stage


def _commit_result(done: Finished) -> dict[str, Any]:
    return json.loads((done.stage_output() / "commit.json").read_text(encoding="utf-8"))


def commit(command: str, payload: dict[str, Any], wallet: dict[str, str], network: str, netuid: int,
           required_lock: float, competition_url: str | None, force: bool) -> ClassicCommand:
    stage = _chain_stage("commit", network, netuid, competition_url, f"{STATE}/{command}")
    stage["wallet"] = wallet
    stage.update(payload)
    stage["required_lock"] = required_lock
    if force:
        stage["force"] = True
    data = _base(command, "Commit to subnet 17 as a reveal commitment (classic 404-cli "
                          f"{command}).")
    data["stages"] = {command: stage}
    return ClassicCommand(command, data, _commit_result, redo=True)


def commit_hash(hash_: str, wallet: dict[str, str], network: str, netuid: int, required_lock: float,
                competition_url: str | None, force: bool) -> ClassicCommand:
    payload = {"hash": checks.commit_hash(hash_)}
    return commit("commit-hash", payload, wallet, network, netuid, required_lock, competition_url, force)


def commit_repo_cdn(repo: str, cdn_url: str, skip_cdn_check: bool, wallet: dict[str, str], network: str,
                    netuid: int, required_lock: float, competition_url: str | None, force: bool,
                    preflight: bool = False) -> ClassicCommand:
    repo, cdn_url = checks.repo_and_cdn(repo, cdn_url)
    payload: dict[str, Any] = {"repo": repo, "cdn_url": cdn_url, "reveal_wait": 0}  # classic: refuse at once
    if skip_cdn_check:
        payload["check_cdn"] = False
    if preflight:
        payload["preflight"] = True
    return commit("commit-repo-cdn", payload, wallet, network, netuid, required_lock, competition_url, force)


def list_all(round_number: int, table: bool, network: str, netuid: int, required_lock: float,
             competition_url: str | None) -> ClassicCommand:
    stage = _chain_stage("commitments", network, netuid, competition_url, f"{STATE}/list-all")
    stage["round"] = round_number
    stage["required_lock"] = required_lock
    data = _base("list-all", "List a round's revealed commitments (classic 404-cli list-all).")
    data["stages"] = {"list-all": stage}

    def result(done: Finished) -> str:
        listing = json.loads((done.stage_output() / "commitments.json").read_text(encoding="utf-8"))
        if table:
            from runner404.cli.classic_table import print_table

            print_table(done.env, listing["round"], listing["commitments"])
            return ""
        return "".join(json.dumps(row) + "\n" for row in listing["commitments"])

    return ClassicCommand("list-all", data, result)


def wallet(name: str, hotkey: str, path: str) -> dict[str, str]:
    return {"name": name, "hotkey": hotkey, "path": path}

