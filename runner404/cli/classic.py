"""`404-cli`: the classic commands, each a one-step manifest run by the same engine."""

from __future__ import annotations

from contextlib import redirect_stderr, redirect_stdout

import typer

from runner404.cli.environment import Environment
from runner404.errors import ExitCode

app = typer.Typer(
    name="404-cli",
    help="The classic subnet-17 commands (commit-hash, commit-repo-cdn, list-all, start-generator, "
         "generate, start-renderer, render, start-judge, judge, stop-pods), each run as a "
         "one-step runner404 manifest. The commands arrive in upcoming releases; use 404-run "
         "for manifests today.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main() -> None:
    """Global options."""


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    try:
        with redirect_stdout(env.stdout), redirect_stderr(env.stderr):
            app(args=argv, prog_name="404-cli", obj=env, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    return ExitCode.OK


def entry() -> None:
    raise SystemExit(main())
