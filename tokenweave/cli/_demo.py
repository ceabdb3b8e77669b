"""`tokenweave demo`: a coordinator and two nodes on loopback embed a whole book, then search it."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console

from tokenweave.cli._cluster import LocalCluster
from tokenweave.cli._jobs_cmd import submit_embed
from tokenweave.client import DEFAULT_MODEL
from tokenweave.models import default_cache_dir, prepare_model

console = Console(stderr=True)

DEFAULT_QUERY = "What did Noah send out from the ark to see if the waters had gone?"


def shipped_text() -> Path:
    return Path(str(resources.files("tokenweave.cli") / "data" / "genesis.txt"))


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
        cluster = LocalCluster(root=root, model_cache=cache)
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
