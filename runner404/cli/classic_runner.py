"""The one shared runner of the classic commands.

A command is a one-step manifest (a plain dict) plus how to read its result. `--print-manifest`
prints the manifest as YAML. Otherwise the manifest is written to
`<cwd>/.runner404/classic/<command>.yaml` (paths made absolute, since a manifest's relative
paths start at its own folder), loaded with `load_manifest` (the same schema and checks as
`404-run`) and run by the engine with the state in `<cwd>/.runner404`. Progress goes to stderr;
stdout gets exactly one JSON document: the classic result or `{"success": false, "error": ...}`.

Exit codes (classic-cli §1): 0 success, 1 handled failure, 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from runner404.cli.environment import Environment
from runner404.errors import ExitCode, Runner404Error

SCHEMA_URL = "https://runner404.dev/schemas/manifest.schema.json"
TARGON_KEY_ENV = "TARGON_API_KEY"
SECRET_OPTIONS = ("--targon-api-key",)
INTERRUPTED = "Interrupted by user"


@dataclass
class Finished:
    """What a command's result reader gets after a successful run."""

    env: Environment
    manifest: Any  # runner404.manifest.model.Manifest
    result: Any  # runner404.engine.executor.RunResult
    events: list[dict[str, Any]]

    def stage_output(self) -> Path:
        stage = next(iter(self.manifest.stages.values()))
        return self.manifest.resolve_path(stage.output)

    def first(self, event: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == event), None)


@dataclass
class ClassicCommand:
    name: str  # the classic command, e.g. "generate"
    manifest: dict[str, Any]  # the one-step manifest, paths relative to the working directory
    result: Callable[[Finished], dict[str, Any] | str]  # the stdout document (a str is printed as is)
    prepare: Callable[[Environment], None] | None = None  # classic lines and input checks before the run
    secrets: dict[str, str] = field(default_factory=dict)  # env values for the manifest's secret refs
    targon_url: str | None = None
    redo: bool = False  # run the stage even when the ledger says it is up to date
    failure: str | None = None  # how failed items are summed up, e.g. "Generation failed for {n} prompts"


def out_json(env: Environment, document: dict[str, Any]) -> None:
    env.out(json.dumps(document))


def fail(env: Environment, message: str, code: int = ExitCode.FAILED) -> None:
    out_json(env, {"success": False, "error": message})
    raise typer.Exit(code)


# -- the manifest as YAML ----------------------------------------------------------------------

def manifest_yaml(data: dict[str, Any], command: str) -> str:
    import yaml

    header = [
        f"# yaml-language-server: $schema={SCHEMA_URL}",
        "#",
        f"# The classic `404-cli {command}` as a one-step runner404 manifest (404-cli {command} --print-manifest).",
        "# Run it from the folder it was made in with: 404-run run FILE",
    ]
    if "secrets" in data:
        header.append(f"# The Targon API key is read from ${TARGON_KEY_ENV} when the run needs it; it is never written here.")
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    return "\n".join(header) + "\n" + body


def _absolute(value: str, cwd: Path) -> str:
    return str(cwd / Path(value).expanduser()) if not os.path.isabs(os.path.expanduser(value)) else value


def for_run(data: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """A copy whose file and folder values are absolute: the run copy lives in .runner404/classic."""
    data = json.loads(json.dumps(data))
    for prompt_set in data.get("prompts", {}).values():
        if "file" in prompt_set:
            prompt_set["file"] = _absolute(prompt_set["file"], cwd)
    for stage in data.get("stages", {}).values():
        for key in ("output", "input", "left", "right"):
            if isinstance(stage.get(key), str):
                stage[key] = _absolute(stage[key], cwd)
        network = stage.get("network")
        if isinstance(network, str) and network.startswith("sim:") and len(network) > 4:
            stage["network"] = "sim:" + _absolute(network[4:], cwd)
        competition = stage.get("competition_url")
        if isinstance(competition, str) and "://" not in competition:
            stage["competition_url"] = _absolute(competition, cwd)
    return data


def _redacted(argv: list[str]) -> list[str]:
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg in SECRET_OPTIONS:
            out.append(arg)
            hide = True
        elif arg.startswith(tuple(f"{o}=" for o in SECRET_OPTIONS)):
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
    return out


# -- running -----------------------------------------------------------------------------------

def _load(env: Environment, command: ClassicCommand, environ: dict[str, str]):
    from runner404.engine import atomic
    from runner404.errors import ManifestError
    from runner404.manifest import load_manifest

    path = env.cwd / ".runner404" / "classic" / f"{command.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, manifest_yaml(for_run(command.manifest, env.cwd), command.name))
    try:
        return load_manifest(path, environ=environ)
    except ManifestError as exc:
        messages = [d.message for d in exc.diagnostics if d.severity == "error"]
        raise Runner404Error("; ".join(messages) or "invalid arguments") from None


def _failure(command: ClassicCommand, result) -> str:
    outcome = result.outcomes[0] if result.outcomes else None
    if outcome is not None and outcome.error:
        return outcome.error
    if outcome is not None and outcome.failed:
        items = sorted(outcome.failed.items())
        head = (command.failure or "{kind} failed for {n} item(s)").format(n=len(items), kind=outcome.kind)
        listed = "; ".join(f"{item}: {reason}" for item, reason in items[:5])
        more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
        return f"{head}: {listed}{more}"
    if result.teardown_errors:
        return "Failed to stop pods: " + "; ".join(result.teardown_errors)
    return f"{command.name} failed (exit {result.exit_code})"


def run(ctx: typer.Context, build: Callable[[], ClassicCommand], print_manifest: bool) -> None:
    """Build the command (argument errors become error JSON), then print or run it."""
    env: Environment = ctx.find_root().obj
    verbosity = int(ctx.find_root().meta.get("verbose", 0))
    try:
        command = build()
        if print_manifest:
            env.stdout.write(manifest_yaml(command.manifest, command.name))
            raise typer.Exit(ExitCode.OK)
        if command.prepare is not None:
            command.prepare(env)
        _execute(env, command, verbosity)
    except KeyboardInterrupt:
        fail(env, INTERRUPTED, ExitCode.INTERRUPTED)
    except Runner404Error as exc:
        fail(env, str(exc))


def _execute(env: Environment, command: ClassicCommand, verbosity: int) -> None:
    from runner404.cli.classic_progress import ClassicProgress
    from runner404.engine.executor import RunOptions
    from runner404.engine.run import run_manifest

    environ = {**env.environ, **command.secrets}
    manifest = _load(env, command, environ)
    if verbosity >= 1:
        for warning in manifest.warnings:
            env.err(f"warning: {warning.message}")
    progress = ClassicProgress(env, verbosity)

    def on_signal(count: int) -> None:
        if count == 1:
            env.err("interrupted: finishing up and stopping pods (Ctrl-C again to exit at once)")
        else:  # the engine exits the process right after this
            out_json(env, {"success": False, "error": INTERRUPTED})
            env.stdout.flush()

    result = run_manifest(
        manifest, command="404-cli " + shlex.join(_redacted(env.argv)), state_dir=env.cwd / ".runner404",
        options=RunOptions(force={"*"} if command.redo else set(), targon_url=command.targon_url, environ=environ),
        listeners=[progress], on_signal=on_signal)
    for outcome in result.outcomes:
        for line in outcome.summary:
            if line not in progress.said and not line.startswith("warning: "):  # warnings: shown as chain notes
                env.err(line)
    for error in result.teardown_errors:
        env.err(f"teardown: {error}")
    if result.interrupted:
        fail(env, INTERRUPTED, ExitCode.INTERRUPTED)
    if result.exit_code != ExitCode.OK:
        env.err(f"run log: {result.log}")
        fail(env, _failure(command, result))
    document = command.result(Finished(env, manifest, result, progress.events))
    if isinstance(document, str):
        if document:
            env.stdout.write(document)
    else:
        out_json(env, document)
