"""`tokenweave demo`: a coordinator and two nodes on loopback embed a whole book, search it, and
settle the rewards for the work on the embedded chain."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tokenweave.cli._cluster import LocalCluster
from tokenweave.cli._jobs_cmd import submit_embed
from tokenweave.cli._rewards_cmd import claim, close_epoch
from tokenweave.client import DEFAULT_MODEL, Client
from tokenweave.models import default_cache_dir, prepare_model

console = Console(stderr=True)

DEFAULT_QUERY = "What did Noah send out from the ark to see if the waters had gone?"


def shipped_text() -> Path:
    return Path(str(resources.files("tokenweave.cli") / "data" / "genesis.txt"))


def settle_and_claim(client: Client, cluster: LocalCluster) -> None:
    """Close the epoch, wait until its root is settled on chain, show earnings, claim once."""
    console.print("\n[bold]Rewards[/]: closing the epoch and settling it on the embedded chain")
    close_epoch(client, wait=True, as_json=False)
    table = Table("operator", "model tokens", "earned TWV", "claimable", title="earnings")
    for node in client.nodes():
        r = client.rewards(node.address)
        table.add_row(node.address, f"{r.tokens:,}", r.earned, r.claimable)
    Console().print(table)
    claim(client, cluster.root / "node0", as_json=False)


def run_demo(
    nodes: int,
    text: Path | None,
    query: str,
    workdir: Path | None,
    model_cache: Path | None,
) -> int:
    text = text or shipped_text()
    cache = model_cache or default_cache_dir()
    with console.status(f"preparing {DEFAULT_MODEL} in {cache} (once)"):
        prepared = prepare_model(DEFAULT_MODEL, cache)
    console.print(f"model {prepared.spec.name} sha256 {prepared.sha256[:16]}… ready")
    with tempfile.TemporaryDirectory(prefix="tokenweave-demo-") as tmp:
        root = workdir or Path(tmp)
        cluster = LocalCluster(
            root=root, model_cache=cache, coordinator_args=("--epoch-seconds", "0")
        )
        try:
            with console.status(f"starting a coordinator and {nodes} nodes on loopback"):
                cluster.start(nodes)
            console.print(
                f"coordinator {cluster.address} with {nodes} nodes up (logs in {root / 'logs'})"
            )
            with cluster.client() as client:
                submit_embed(
                    client,
                    [text],
                    model=DEFAULT_MODEL,
                    window=None,
                    overlap=None,
                    as_json=False,
                    query=query,
                    top=3,
                )
                settle_and_claim(client, cluster)
        finally:
            with console.status("shutting down"):
                codes = cluster.stop()
        clean = all(code == 0 for code in codes.values())
        console.print(
            "all processes exited cleanly"
            if clean
            else f"[red]unclean exits: {codes}[/] (logs in {root / 'logs'})"
        )
        return 0 if clean else 1
