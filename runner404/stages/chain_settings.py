"""Chain and competition settings of the `commit` and `commitments` stages."""

from __future__ import annotations

from runner404.chain.competition import Competition, competition_base
from runner404.chain.flows import ChainSettings
from runner404.engine.context import StageContext


def settings(ctx: StageContext) -> tuple[ChainSettings, Competition]:
    """`sim:PATH` and a local competition folder are relative to the manifest's folder."""
    network = str(ctx.params.get("network", "finney"))
    if network.startswith("sim:"):
        network = "sim:" + str(ctx.path(network[len("sim:"):]))
    base = competition_base(ctx.params.get("competition_url"), ctx.pods.environ)
    if "://" not in base:
        base = str(ctx.path(base))
    found = ChainSettings(network=network, netuid=int(ctx.params.get("netuid", 17)), competition=base,
                          required_lock=float(ctx.params.get("required_lock", 100.0)))
    return found, Competition(base)
