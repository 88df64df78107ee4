"""`404-cli`: the classic commands, each a one-step manifest run by the same engine.

Every command turns its options into a manifest dict (classic_manifests), hands it to the one
shared runner (classic_runner) and prints what it returns: exactly one JSON document on stdout,
progress on stderr. `--print-manifest` prints the manifest instead of running it.
"""

# No `from __future__ import annotations` here: typer would then evaluate every parameter's
# annotation string (typing.get_type_hints) at each start, a few ms of every command.

from contextlib import redirect_stderr, redirect_stdout
from typing import Annotated, Optional

import typer

from runner404.cli.environment import Environment
from runner404.cli.typer_values import install as _install_plain_values
from runner404.errors import ExitCode

_install_plain_values()  # keeps pydantic out of start-up; see typer_values

app = typer.Typer(
    name="404-cli",
    help="The classic subnet-17 commands, each run as a one-step runner404 manifest.\n\n"
         "Machine-readable JSON goes to stdout (one document), progress to stderr. Exit codes: 0 success, "
         "1 failure, 2 usage error, 130 interrupted. Add --print-manifest to any command to see the "
         "manifest it runs (then run it with 404-run).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- shared options ------------------------------------------------------------------------------

PrintManifest = Annotated[bool, typer.Option(
    "--print-manifest", help="Print the one-step manifest (YAML) instead of running it.")]
TargonKey = Annotated[str, typer.Option(
    "--targon-api-key", metavar="KEY", help="Targon API key (never written to the manifest or logs).")]
TargonUrl = Annotated[Optional[str], typer.Option(
    "--targon-url", metavar="URL", help="Targon API base URL (default: $TARGON_API_URL, then https://api.targon.com).")]
CompetitionUrl = Annotated[Optional[str], typer.Option(
    "--competition-url", metavar="URL|DIR",
    help="Where state.json and rounds/ are read: http(s), file:// or a folder. "
         "Default: $RUNNER404_COMPETITION_URL, then the public competition repository.")]
Netuid = Annotated[int, typer.Option("--netuid", min=0, metavar="N", help="Subnet id.")]
Network = Annotated[str, typer.Option(
    "--subtensor.endpoint", metavar="NETWORK",
    help="finney, test, local, a ws(s):// URL, or sim:PATH for an offline rehearsal chain.")]
RequiredLock = Annotated[float, typer.Option(
    "--required-lock", min=0, metavar="RHO", help="Required locked ρ (alpha conviction lock) per submitting hotkey.")]
WalletName = Annotated[str, typer.Option("--wallet.name", metavar="NAME", help="Wallet (coldkey) name.")]
WalletHotkey = Annotated[str, typer.Option("--wallet.hotkey", metavar="NAME",
                                           help="Hotkey name; the commitment is signed with it.")]
WalletPath = Annotated[str, typer.Option("--wallet.path", metavar="DIR", help="Wallets folder.")]
Force = Annotated[bool, typer.Option(
    "--force", help="Commit even when the reveal would land across a round boundary.")]
Endpoint = Annotated[str, typer.Option("--endpoint", metavar="URL", help="URL of the running service.")]
PromptsJson = Annotated[str, typer.Option(
    "--prompts-json", metavar="FILE", help='Prompts file: {"prompts": [{"stem": ..., "image_url": ...}], "seed": 42}.')]


def _run(ctx: typer.Context, build, print_manifest: bool) -> None:
    from runner404.cli import classic_runner

    classic_runner.run(ctx, build, print_manifest)


def _m():
    from runner404.cli import classic_manifests

    return classic_manifests


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[int, typer.Option(
        "-v", "--verbose", count=True,
        help="More progress on stderr: -v details, -vv every engine event. Goes before the command.")] = 0,
) -> None:
    """Global options."""
    ctx.meta["verbose"] = verbose


# -- chain ---------------------------------------------------------------------------------------

@app.command("commit-hash", short_help="Commit your model's commit hash (step 1 of 2).")
def commit_hash(
    ctx: typer.Context,
    hash: Annotated[str, typer.Option("--hash", metavar="SHA", help="HF commit SHA: the full 40 hex characters.")],
    wallet_name: WalletName,
    wallet_hotkey: WalletHotkey,
    wallet_path: WalletPath = "~/.bittensor/wallets",
    network: Network = "finney",
    netuid: Netuid = 17,
    required_lock: RequiredLock = 100.0,
    competition_url: CompetitionUrl = None,
    force: Force = False,
    print_manifest: PrintManifest = False,
) -> None:
    """Commit your model's commit hash for the round the reveal lands in (step 1 of 2)."""
    _run(ctx, lambda: _m().commit_hash(hash, _m().wallet(wallet_name, wallet_hotkey, wallet_path), network,
                                       netuid, required_lock, competition_url, force), print_manifest)


@app.command("commit-repo-cdn", short_help="Commit your repo and CDN URL (step 2 of 2).")
def commit_repo_cdn(
    ctx: typer.Context,
    repo: Annotated[str, typer.Option("--repo", metavar="USER/REPO", help="HF repo id (e.g. user/repo).")],
    cdn_url: Annotated[str, typer.Option(
        "--cdn-url", metavar="URL", help="Public URL (e.g. S3-compatible storage) the validators download your "
                                         "<stem>.js files from; HEAD-checked before committing.")],
    wallet_name: WalletName,
    wallet_hotkey: WalletHotkey,
    wallet_path: WalletPath = "~/.bittensor/wallets",
    network: Network = "finney",
    netuid: Netuid = 17,
    required_lock: RequiredLock = 100.0,
    competition_url: CompetitionUrl = None,
    skip_cdn_check: Annotated[bool, typer.Option("--skip-cdn-check", help="Do not HEAD-check --cdn-url.")] = False,
    preflight: Annotated[bool, typer.Option(
        "--preflight", help="Download <cdn-url>/<stem>.js for every stem of the round, as the validators will, and "
                            "refuse (unless --force) when any is missing.")] = False,
    force: Force = False,
    print_manifest: PrintManifest = False,
) -> None:
    """Commit your repo and CDN URL once your hash is revealed (step 2 of 2)."""
    _run(ctx, lambda: _m().commit_repo_cdn(repo, cdn_url, skip_cdn_check,
                                           _m().wallet(wallet_name, wallet_hotkey, wallet_path), network, netuid,
                                           required_lock, competition_url, force, preflight), print_manifest)


def _ask_round(ctx: typer.Context) -> int:
    """The round from stdin after a prompt on stderr; only on a terminal (D4)."""
    env: Environment = ctx.find_root().obj
    if not env.stdin_isatty:
        raise typer.BadParameter("give the round number (stdin is not a terminal, so it is not asked for)",
                                 param_hint="'--round'")
    while True:
        env.stderr.write("Enter round number: ")
        env.stderr.flush()
        line = env.stdin.readline()
        if not line:
            raise typer.BadParameter("no round number given", param_hint="'--round'")
        if line.strip().isdigit():
            return int(line.strip())
        env.err(f"Error: '{line.strip()}' is not a valid round number.")


@app.command("list-all", short_help="List a round's revealed commitments.")
def list_all(
    ctx: typer.Context,
    round: Annotated[Optional[int], typer.Option(
        "--round", min=0, metavar="N", help="Round to list; asked for on a terminal when missing.")] = None,
    table: Annotated[bool, typer.Option("--table", help="Print a table instead of JSON lines.")] = False,
    network: Network = "finney",
    netuid: Netuid = 17,
    required_lock: RequiredLock = 100.0,
    competition_url: CompetitionUrl = None,
    print_manifest: PrintManifest = False,
) -> None:
    """List a round's revealed commitments: one JSON object per line, or a table."""
    try:
        number = round if round is not None else _ask_round(ctx)
    except KeyboardInterrupt:
        from runner404.cli.classic_runner import INTERRUPTED, fail

        fail(ctx.find_root().obj, INTERRUPTED, ExitCode.INTERRUPTED)
    _run(ctx, lambda: _m().list_all(number, table, network, netuid, required_lock, competition_url), print_manifest)


# -- pods ----------------------------------------------------------------------------------------

@app.command("start-generator", short_help="Start the generator pod on Targon; print its URL.")
def start_generator(
    ctx: typer.Context,
    image_url: Annotated[str, typer.Option("--image-url", metavar="IMAGE", help="Your generator's container image.")],
    targon_api_key: TargonKey,
    targon_url: TargonUrl = None,
    print_manifest: PrintManifest = False,
) -> None:
    """Start the generator pod on Targon (h200-large, port 10006) and print its URL."""
    _run(ctx, lambda: _m().start_generator(image_url, targon_api_key, targon_url), print_manifest)


@app.command("start-renderer", short_help="Start the renderer pod on Targon; print its URL.")
def start_renderer(
    ctx: typer.Context,
    targon_api_key: TargonKey,
    targon_url: TargonUrl = None,
    print_manifest: PrintManifest = False,
) -> None:
    """Start the render service pod on Targon (cpu-small, port 8000) and print its URL."""
    _run(ctx, lambda: _m().start_renderer(targon_api_key, targon_url), print_manifest)


@app.command("start-judge", short_help="Start the judge (vLLM) pod on Targon; print its URL.")
def start_judge(
    ctx: typer.Context,
    targon_api_key: TargonKey,
    targon_url: TargonUrl = None,
    resource: Annotated[str, typer.Option("--resource", metavar="NAME", help="Targon resource.")] = "rtx6000b-small",
    print_manifest: PrintManifest = False,
) -> None:
    """Start the judge pod on Targon (vLLM serving GLM-4.6V-Flash, port 8000) and print its URL."""
    _run(ctx, lambda: _m().start_judge(targon_api_key, targon_url, resource), print_manifest)


@app.command("stop-pods", short_help="Delete the generator, render and judge pods.")
def stop_pods(
    ctx: typer.Context,
    targon_api_key: TargonKey,
    targon_url: TargonUrl = None,
    print_manifest: PrintManifest = False,
) -> None:
    """Delete the pods named generator, render and judge (already stopped ones are skipped)."""
    _run(ctx, lambda: _m().stop_pods(targon_api_key, targon_url), print_manifest)


# -- work ----------------------------------------------------------------------------------------

@app.command("generate")
def generate(
    ctx: typer.Context,
    prompts_json: PromptsJson,
    endpoint: Endpoint,
    seed: Annotated[Optional[str], typer.Option(
        "--seed", metavar="N", help="Generation seed (default: 'seed' in the prompts file).")] = None,
    output_folder: Annotated[str, typer.Option("--output-folder", metavar="DIR", help="Where <stem>.js go.")] = "results",
    print_manifest: PrintManifest = False,
) -> None:
    """Generate one <stem>.js per prompt on a running generator."""
    _run(ctx, lambda: _m().generate(prompts_json, endpoint, seed, output_folder), print_manifest)


@app.command("render", short_help="Render a folder of .js files on a running renderer.")
def render(
    ctx: typer.Context,
    data_dir: Annotated[str, typer.Option("--data-dir", metavar="DIR", help="Folder of <stem>.js files.")],
    endpoint: Endpoint,
    output_dir: Annotated[str, typer.Option(
        "--output-dir", metavar="DIR", help="Where <stem>/{white,gray}/*.png and grid.png go.")] = "results",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Files rendered at once.")] = 2,
    print_manifest: PrintManifest = False,
) -> None:
    """Render every .js of a folder to white and gray views and a grid on a running renderer."""
    _run(ctx, lambda: _m().render(data_dir, endpoint, output_dir, concurrency), print_manifest)


@app.command("judge", short_help="Judge two rendered sets duel by duel with a VLM.")
def judge(
    ctx: typer.Context,
    prompts_json: PromptsJson,
    image_dir_1: Annotated[str, typer.Option("--image-dir-1", metavar="DIR", help="Rendered set A (left).")],
    image_dir_2: Annotated[str, typer.Option("--image-dir-2", metavar="DIR", help="Rendered set B (right).")],
    endpoint: Endpoint,
    seed: Annotated[str, typer.Option("--seed", metavar="N", help="Duel seed.")],
    output_dir: Annotated[str, typer.Option(
        "--output-dir", metavar="DIR", help="Where <stem>.json, duels.json and match.json go.")] = "judge-results",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Duels judged at once.")] = 1,
    print_manifest: PrintManifest = False,
) -> None:
    """Judge two rendered sets (--image-dir-1 left, --image-dir-2 right) duel by duel with a running VLM."""
    _run(ctx, lambda: _m().judge(prompts_json, image_dir_1, image_dir_2, endpoint, seed, output_dir, concurrency),
         print_manifest)


# -- entry point ---------------------------------------------------------------------------------

def _error(env: Environment, message: str, code: int) -> int:
    import json

    env.out(json.dumps({"success": False, "error": message}))
    return code


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Entry point of `404-cli`; returns the exit code. Never shows a traceback (D5) unless
    RUNNER404_DEBUG is set."""
    import sys

    from runner404.errors import Runner404Error

    env = env or Environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    env.argv = argv
    try:
        with redirect_stdout(env.stdout), redirect_stderr(env.stderr):
            app(args=argv, prog_name="404-cli", obj=env, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    except KeyboardInterrupt:
        return _error(env, "Interrupted by user", ExitCode.INTERRUPTED)
    except Runner404Error as exc:
        return _error(env, str(exc), ExitCode.FAILED)
    except Exception as exc:  # a bug of ours: say so briefly; RUNNER404_DEBUG=1 shows the traceback
        if env.environ.get("RUNNER404_DEBUG"):
            raise
        env.err("This is a bug in runner404; run again with RUNNER404_DEBUG=1 for the traceback and report it.")
        return _error(env, f"internal error: {type(exc).__name__}: {exc}", ExitCode.FAILED)
    return ExitCode.OK


def entry() -> None:
    raise SystemExit(main())
