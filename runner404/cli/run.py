"""`404-run`: validate, plan, graph and run manifests.

Each command turns its arguments into one call of the core and prints the result; the core
never prints and never exits.
"""

# No `from __future__ import annotations` here: typer would then evaluate every parameter's
# annotation string (typing.get_type_hints) at each start, a few ms of every command.

import json
from contextlib import redirect_stderr, redirect_stdout
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from runner404 import __version__
from runner404.cli.environment import Environment
from runner404.cli.typer_values import install as _install_plain_values
from runner404.errors import ExitCode, ManifestError, Runner404Error

_install_plain_values()  # keeps pydantic out of start-up; see typer_values

app = typer.Typer(
    name="404-run",
    help="Run declarative subnet-17 evaluations: pods, prompt sets and stages in one YAML manifest.\n\n"
         "Start with `404-run init`, check a manifest with `404-run validate FILE`, "
         "and preview what would run with `404-run plan FILE`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    text = "text"
    json = "json"


class GraphFormat(str, Enum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="PATH=VALUE",
    help="Override a manifest value (parsed as YAML), e.g. --set vars.seed=7. Repeatable.")]
VarsFileOption = Annotated[Optional[list[Path]], typer.Option(
    "--vars-file", metavar="FILE", help="YAML file of values merged into vars:. Repeatable.")]
ManifestArg = Annotated[Path, typer.Argument(metavar="FILE", help="The manifest (YAML).")]


def _env(ctx: typer.Context) -> Environment:
    return ctx.obj


def _load(env: Environment, file: Path, sets: list[str] | None, vars_files: list[Path] | None):
    from runner404.manifest import load_manifest

    return load_manifest(env.path(file), environ=env.environ, sets=sets or (),
                         vars_files=[env.path(v) for v in vars_files or ()], display=str(file))


def _print_warnings(env: Environment, manifest) -> None:
    from runner404.diagnostics import format_text

    if manifest.warnings:
        env.err(format_text(manifest.warnings))


def _version(value: bool) -> None:
    if value:
        print(f"404-run {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Global options."""


@app.command()
def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Manifests to check.")],
    sets: SetOption = None,
    vars_files: VarsFileOption = None,
    format: Annotated[Format, typer.Option("--format", help="text, or json for editors and CI.")] = Format.text,
) -> None:
    """Check manifests against the schema and their cross-references.

    Every error is listed as file:line:col. Exit 0 when all are valid, 2 otherwise.
    """
    from runner404.diagnostics import format_json, format_text

    env = _env(ctx)
    diagnostics, failed = [], False
    for file in files:
        try:
            manifest = _load(env, file, sets, vars_files)
        except ManifestError as exc:
            diagnostics += exc.diagnostics
            failed = True
            continue
        diagnostics += manifest.warnings
        if format is Format.text:
            _print_warnings(env, manifest)
            env.out(f"{file}: valid ({len(manifest.stages)} stages, {len(manifest.pods)} pods, "
                    f"{len(manifest.prompt_sets)} prompt sets)")
    if format is Format.json:
        env.out(format_json(diagnostics))
    elif failed:
        env.err(format_text([d for d in diagnostics if d.severity == "error"]))
    raise typer.Exit(ExitCode.USAGE if failed else ExitCode.OK)


StateDirOption = Annotated[Optional[Path], typer.Option(
    "--state-dir", metavar="DIR", help="Where the ledger and run logs live. Default: .runner404 beside the manifest.")]
ForceOption = Annotated[Optional[list[str]], typer.Option(
    "--force", metavar="STAGE", help="Redo this stage even if it is up to date; a bare --force (or 'all') redoes every stage. Repeatable.")]


def _force(values: list[str] | None) -> set[str]:
    return {"*" if v in ("all", "*") else v for v in values or ()}


@app.command()
def plan(
    ctx: typer.Context,
    file: ManifestArg,
    sets: SetOption = None,
    vars_files: VarsFileOption = None,
    state_dir: StateDirOption = None,
    force: ForceOption = None,
    format: Annotated[Format, typer.Option("--format", help="text, or json.")] = Format.text,
) -> None:
    """Show what `run` would do, and why; changes nothing.

    Stages are listed in execution order, stages that run in parallel grouped in one step, with the pods each needs, their number of items and RUN or SKIP with the reason.
    """
    from runner404.cli.formatting import plan_text
    from runner404.engine.run import plan_manifest

    env = _env(ctx)
    manifest = _load(env, file, sets, vars_files)
    _check_forced(manifest, force)
    result = plan_manifest(manifest, state_dir=env.path(state_dir) if state_dir else None, force=_force(force))
    if format is Format.json:
        env.out(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_warnings(env, manifest)
        env.out(plan_text(result))


def _without_force(argv: list[str]) -> list[str]:
    """The command that resumes a run: the same, minus --force (what was redone stays redone)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--force":
            skip = True
        elif not arg.startswith("--force="):
            out.append(arg)
    return out


def _retype_note(argv: list[str], shown: list[str]) -> str:
    """For a resume command with masked --set values: a line saying what *** stands for."""
    hidden = [s.removeprefix("--set=").partition("=")[0] for a, s in zip(argv, shown) if a != s]
    if not hidden:
        return ""
    return (f"\n  (*** stands for the value given to --set {', '.join(hidden)}, which is never shown "
            "or stored: give it again, or declare it under secrets:)")


def _check_forced(manifest, force: list[str] | None) -> None:
    from runner404.diagnostics import did_you_mean
    from runner404.errors import UsageError

    for stage in force or ():
        if stage not in manifest.stages and stage not in ("all", "*"):
            raise UsageError(f"--force {stage}: no such stage{did_you_mean(stage, manifest.stages)}")


class Progress(str, Enum):
    auto = "auto"
    plain = "plain"
    json = "json"


@app.command(short_help="Run a manifest: do what is missing. `404-run FILE` is the same.")
def run(
    ctx: typer.Context,
    file: ManifestArg,
    sets: SetOption = None,
    vars_files: VarsFileOption = None,
    state_dir: StateDirOption = None,
    force: ForceOption = None,
    targon_url: Annotated[Optional[str], typer.Option(
        "--targon-url", metavar="URL", help="Targon API base URL (default: $TARGON_API_URL, the manifest, "
                                            "then https://api.targon.com).")] = None,
    progress: Annotated[Progress, typer.Option(
        "--progress", help="auto: a live table on a terminal, lines otherwise; plain; json: NDJSON events on stdout.")
    ] = Progress.auto,
) -> None:
    """Run a manifest: do what is missing, skip what is done. `404-run FILE` is the same.

    Pods start on first use and stop at the end unless kept. Ctrl-C stops cleanly and prints the command that resumes; a second Ctrl-C exits at once. Exit codes: 0 done, 1 a stage failed, 2 invalid manifest, 3 provider failure, 4 some items failed, 130 interrupted.
    """
    import shlex

    from runner404.cli.formatting import run_summary
    from runner404.cli.progress import JsonProgress, LiveProgress, PlainProgress
    from runner404.engine.executor import RunOptions
    from runner404.engine.run import run_manifest
    from runner404.manifest.overrides import shown_argv

    env = _env(ctx)
    manifest = _load(env, file, sets, vars_files)
    _check_forced(manifest, force)
    if progress is Progress.json:
        listener = JsonProgress(env)
    elif progress is Progress.auto and env.stderr_isatty:
        listener = LiveProgress(env)
    else:
        listener = PlainProgress(env)
    _print_warnings(env, manifest)
    shown = shown_argv(env.argv)  # secrets given by --set are stored and printed as ***
    command = "404-run " + shlex.join(shown)
    resume = "404-run " + shlex.join(_without_force(shown)) + _retype_note(env.argv, shown)

    def on_signal(count: int) -> None:
        if count == 1:
            env.err("interrupted: finishing up and stopping pods (Ctrl-C again to exit at once)")
        else:
            env.err(f"interrupted again: exiting now; resume with: {resume}")

    result = run_manifest(manifest, command=command, state_dir=env.path(state_dir) if state_dir else None,
                          options=RunOptions(force=_force(force), targon_url=targon_url, environ=env.environ),
                          listeners=[listener], on_signal=on_signal)
    if progress is not Progress.json:
        env.out(run_summary(result, manifest.file))
    if result.interrupted:
        env.err(f"interrupted; resume with: {resume}")
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    ctx: typer.Context,
    file: ManifestArg,
    sets: SetOption = None,
    vars_files: VarsFileOption = None,
    state_dir: StateDirOption = None,
    format: Annotated[Format, typer.Option("--format", help="text, or json.")] = Format.text,
) -> None:
    """Show the last run of each stage and the state of its items."""
    from runner404.cli.formatting import status_text
    from runner404.engine.run import stage_status

    env = _env(ctx)
    manifest = _load(env, file, sets, vars_files)
    stages = stage_status(manifest, state_dir=env.path(state_dir) if state_dir else None)
    if format is Format.json:
        env.out(json.dumps({"stages": [s.to_json() for s in stages]}, indent=2))
    else:
        env.out(status_text(stages))


@app.command()
def report(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(metavar="DIR|FILE", help="A judge output folder, or a manifest.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="DIR",
                                                   help="Where to write (folder input only; default DIR/report).")] = None,
    win_margin: Annotated[float, typer.Option("--win-margin", help="Margin at which right qualifies.")] = 0.07,
    title: Annotated[Optional[str], typer.Option("--title", help="Report title.")] = None,
    sets: SetOption = None,
    vars_files: VarsFileOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Write report.json, summary.md, report.html and junit.xml again.

    From a judge output folder (duels.json, match.json), or for every report stage of a manifest whose judge has run.
    """
    env = _env(ctx)
    path = env.path(source)
    written: list[Path] = []
    if path.is_dir():
        from runner404.report.write import sources_from_match, write_report

        _, written = write_report(sources_from_match(path, env.cwd), env.path(output) if output else path / "report",
                                  win_margin=win_margin, title=title or f"{source}",
                                  provenance={}, failures=[])
    else:
        from runner404.engine.executor import state_paths
        from runner404.engine.ledger import Ledger
        from runner404.stages.report import report_stage

        manifest = _load(env, source, sets, vars_files)
        ledger_path, _ = state_paths(manifest, env.path(state_dir) if state_dir else None)
        ledger = Ledger(ledger_path, readonly=True) if ledger_path.exists() else None
        try:
            for stage in manifest.stages.values():
                if stage.kind == "report":
                    written += report_stage(manifest, stage, ledger)[1]
        finally:
            if ledger:
                ledger.close()
    for file in written:
        env.out(str(file))


@app.command()
def graph(
    ctx: typer.Context,
    file: ManifestArg,
    sets: SetOption = None,
    vars_files: VarsFileOption = None,
    format: Annotated[GraphFormat, typer.Option("--format", help="text, mermaid or dot.")] = GraphFormat.text,
) -> None:
    """Draw the stage dependency graph (text, mermaid or Graphviz dot)."""
    from runner404.plan import graph as graphs
    from runner404.plan.planner import dependency_map

    env = _env(ctx)
    manifest = _load(env, file, sets, vars_files)
    nodes = list(manifest.stages)
    labels = {sid: stage.kind for sid, stage in manifest.stages.items()}
    draw = {"text": graphs.to_text, "mermaid": graphs.to_mermaid, "dot": graphs.to_dot}[format.value]
    env.out(draw(nodes, labels, dependency_map(manifest)))


class SchemaFormat(str, Enum):
    json = "json"
    markdown = "markdown"


@app.command(short_help="Print the manifest JSON Schema, or a Markdown reference.")
def schema(
    ctx: typer.Context,
    format: Annotated[SchemaFormat, typer.Option("--format", help="json (the schema), or markdown (a reference).")
                      ] = SchemaFormat.json,
) -> None:
    """Print the manifest JSON Schema (2020-12), or a Markdown reference made from it.

    Editors use the schema to complete and check manifests: 404-run schema > manifest.schema.json
    """
    if format is SchemaFormat.markdown:
        from runner404.schema_docs import markdown

        _env(ctx).out(markdown().rstrip("\n"))
    else:
        from runner404.schema import schema_text

        _env(ctx).out(schema_text().rstrip("\n"))


@app.command(short_help="Write a starter manifest, its prompts and the schema.")
def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(metavar="[DIR]", help="Where to write (default: here).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a commented starter manifest (manifest.yaml), its prompts and the schema for editors."""
    from runner404.starter import write_starter

    env = _env(ctx)
    for written in write_starter(env.path(directory), force=force):
        env.out(f"wrote {written}")
    env.out(f"next: 404-run validate {Path(directory) / 'manifest.yaml'}")


COMMANDS = {"validate", "plan", "run", "status", "report", "graph", "schema", "init", "chain"}


def _shorthand(argv: list[str]) -> list[str]:
    """`404-run FILE [options]` means `404-run run FILE [options]`; a bare `--force` (last, or
    before another option or the manifest) means `--force all`."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["run", *argv]
    if not argv or argv[0] not in ("run", "plan"):
        return argv
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--force" and (following is None or following.startswith("-")
                                 or following.endswith((".yaml", ".yml"))):
            out.append("all")
    return out


def _add_chain_commands() -> None:
    from runner404.cli.chain import app as chain_app

    app.add_typer(chain_app, name="chain")


_add_chain_commands()


def _interruptions() -> tuple[type[BaseException], ...]:
    """Ctrl-C, and asyncio's cancellation if a run imported asyncio (evaluated when an exception
    is matched, so commands that never touch asyncio do not pay for importing it)."""
    import sys

    asyncio = sys.modules.get("asyncio")
    return (KeyboardInterrupt, asyncio.CancelledError) if asyncio else (KeyboardInterrupt,)


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Entry point of `404-run`; returns the exit code."""
    import sys

    env = env or Environment()
    argv = _shorthand(list(sys.argv[1:] if argv is None else argv))
    env.argv = argv
    try:
        with redirect_stdout(env.stdout), redirect_stderr(env.stderr):
            app(args=argv, prog_name="404-run", obj=env, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    except ManifestError as exc:
        from runner404.diagnostics import format_text

        env.err(format_text([d for d in exc.diagnostics if d.severity == "error"]))
        return exc.exit_code
    except Runner404Error as exc:
        env.err(f"404-run: error: {exc}")
        return exc.exit_code
    except _interruptions():
        env.err("404-run: interrupted")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug of ours: say so briefly; RUNNER404_DEBUG=1 shows the traceback
        if env.environ.get("RUNNER404_DEBUG"):
            raise
        env.err(f"404-run: internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in runner404; run again with RUNNER404_DEBUG=1 for the traceback and report it.")
        return ExitCode.FAILED
    return ExitCode.OK


def entry() -> None:
    raise SystemExit(main())
