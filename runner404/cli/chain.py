"""`404-run chain …`: manage an offline rehearsal chain (a JSON file used as `sim:PATH`)."""

# No `from __future__ import annotations` here: typer would then evaluate every parameter's
# annotation string (typing.get_type_hints) at each start, a few ms of every command.

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from runner404.cli.environment import Environment

app = typer.Typer(
    name="chain",
    help="Manage an offline rehearsal chain: a JSON file that stands in for subnet 17 "
         "(use it as --subtensor.endpoint sim:PATH or network: sim:PATH).",
    no_args_is_help=True,
    add_completion=False,
    short_help="Manage an offline rehearsal chain that stands in for subnet 17.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

PathArg = Annotated[Path, typer.Argument(metavar="PATH", help="The rehearsal chain file.")]
NetuidOption = Annotated[int, typer.Option("--netuid", help="Subnet to register on.")]
WalletName = Annotated[Optional[str], typer.Option("--wallet.name", help="Also register this wallet's hotkey.")]
WalletHotkey = Annotated[str, typer.Option("--wallet.hotkey", help="Hotkey of --wallet.name.")]
WalletPath = Annotated[str, typer.Option("--wallet.path", help="Wallets folder.")]


def _env(ctx: typer.Context) -> Environment:
    return ctx.find_root().obj


def _hotkeys(addresses: list[str] | None, name: str | None, hotkey: str, path: str) -> list:
    from runner404.chain.client import WalletRef

    found: list = list(addresses or [])
    if name:
        found.append(WalletRef(name, hotkey, path))
    return found


@app.command(short_help="Create a rehearsal chain with hotkeys registered.")
def init(
    ctx: typer.Context,
    path: PathArg,
    block: Annotated[int, typer.Option("--block", help="Starting block.")] = 1,
    register: Annotated[Optional[list[str]], typer.Option("--register", metavar="SS58",
                                                          help="Register this hotkey address. Repeatable.")] = None,
    netuid: NetuidOption = 17,
    wallet_name: WalletName = None,
    wallet_hotkey: WalletHotkey = "default",
    wallet_path: WalletPath = "~/.bittensor/wallets",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Create a rehearsal chain at a block, with hotkeys registered on the subnet."""
    from runner404.chain import rehearsal

    env = _env(ctx)
    state = rehearsal.init(env.path(path), block=block, register=_hotkeys(register, wallet_name, wallet_hotkey,
                                                                          wallet_path),
                           netuid=netuid, overwrite=force)
    env.out(json.dumps(state, indent=2))


@app.command()
def register(
    ctx: typer.Context,
    path: PathArg,
    addresses: Annotated[Optional[list[str]], typer.Argument(metavar="[SS58]...", help="Hotkey addresses.")] = None,
    netuid: NetuidOption = 17,
    wallet_name: WalletName = None,
    wallet_hotkey: WalletHotkey = "default",
    wallet_path: WalletPath = "~/.bittensor/wallets",
) -> None:
    """Register hotkeys on the subnet of a rehearsal chain."""
    from runner404.chain import rehearsal
    from runner404.errors import UsageError

    env = _env(ctx)
    hotkeys = _hotkeys(addresses, wallet_name, wallet_hotkey, wallet_path)
    if not hotkeys:
        raise UsageError("give hotkey addresses or --wallet.name")
    for address in rehearsal.register(env.path(path), hotkeys, netuid=netuid):
        env.out(f"registered {address} on netuid {netuid}")


@app.command(short_help="Move the chain forward, revealing due commitments.")
def advance(
    ctx: typer.Context,
    path: PathArg,
    blocks: Annotated[int, typer.Option("--blocks", min=1, help="Blocks to advance.")] = 1,
) -> None:
    """Move the chain forward; commitments whose reveal block is reached are revealed."""
    from runner404.chain import rehearsal

    env = _env(ctx)
    env.out(json.dumps(rehearsal.advance(env.path(path), blocks), indent=2))


@app.command()
def show(ctx: typer.Context, path: PathArg) -> None:
    """Print the whole state of a rehearsal chain as JSON."""
    from runner404.chain import rehearsal

    env = _env(ctx)
    env.out(json.dumps(rehearsal.show(env.path(path)), indent=2))


@app.command()
def lock(
    ctx: typer.Context,
    path: PathArg,
    coldkey: Annotated[str, typer.Argument(metavar="COLDKEY", help="Coldkey address.")],
    alpha: Annotated[float, typer.Argument(metavar="ALPHA", help="Locked alpha (ρ).")],
    netuid: NetuidOption = 17,
) -> None:
    """Set a coldkey's conviction lock (for rehearsing the lock check)."""
    from runner404.chain import rehearsal

    env = _env(ctx)
    rehearsal.set_lock(env.path(path), coldkey, alpha, netuid=netuid)
    env.out(f"{coldkey} has {alpha:g} ρ locked on netuid {netuid}")
