"""`tokenweave demo`: a coordinator and two nodes on loopback embed a whole book and search it,
answer a question over its first twelve chapters (10,800 tokens, past the LLM's 8,192-token
context: the answer is in chapter 11, past token 9,800) by map-reduce, and settle the rewards
for the work on the embedded chain."""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tokenweave.cli._ask_cmd import submit_ask
from tokenweave.cli._cluster import LocalCluster
from tokenweave.cli._ids import short
from tokenweave.cli._jobs_cmd import submit_embed
from tokenweave.cli._rewards_cmd import claim, close_epoch
from tokenweave.client import DEFAULT_GENERATOR, DEFAULT_MODEL, Client
from tokenweave.models import default_cache_dir, prepare_generator, prepare_model

console = Console(stderr=True)

DEFAULT_QUERY = "What did Noah send out from the ark to see if the waters had gone?"
DEFAULT_QUESTION = "What was the name of Abram's wife?"
#: The demo asks over the book up to this line (chapters 1-12), to keep it to a minute or so
#: on two cores; `tokenweave submit ask` takes the whole book (and any other).
ASK_UNTIL = "Chapter 13"


def shipped_text() -> Path:
    return Path(str(resources.files("tokenweave.cli") / "data" / "genesis.txt"))


def settle_and_claim(client: Client, cluster: LocalCluster) -> None:
    """Close the epoch, wait until its root is settled on chain, show earnings, claim once."""
    console.print("\n[bold]Rewards[/]: closing the epoch and settling it on the embedded chain")
    close_epoch(client, wait=True, as_json=False)
    table = Table("operator", "model tokens", "earned TWV", "claimable", title="earnings")
    for node in client.nodes():
        r = client.rewards(node.address)
        table.add_row(short(node.address, "address", False), f"{r.tokens:,}", r.earned, r.claimable)
    Console().print(table)
    claim(client, cluster.root / "node0", as_json=False)


def ask_book(client: Client, text: Path, question: str, root: Path) -> None:
    """Map-reduce a question over the first chapters of the book (all of another text)."""
    book = text.read_text(encoding="utf-8")
    end = book.find(ASK_UNTIL)
    part = root / f"{text.stem}-asked.txt"
    part.write_text(book[: end if end > 0 else len(book)], encoding="utf-8")
    what = "chapters 1-12 of the book" if end > 0 else "the text"
    console.print(f"\n[bold]Ask[/]: {question!r} over {what}, map-reduce on the nodes")
    submit_ask(
        client,
        argparse.Namespace(
            files=[part],
            dataset=None,
            text_field="text",
            question=question,
            model=DEFAULT_GENERATOR,
            window=None,
            overlap=None,
            note_tokens=None,
            max_tokens=None,
            json=False,
        ),
    )


def run_demo(
    nodes: int,
    text: Path | None,
    query: str,
    question: str,
    workdir: Path | None,
    model_cache: Path | None,
) -> int:
    text = text or shipped_text()
    cache = model_cache or default_cache_dir()
    with console.status(f"preparing {DEFAULT_MODEL} and {DEFAULT_GENERATOR} in {cache} (once)"):
        prepared = prepare_model(DEFAULT_MODEL, cache)
        prepare_generator(DEFAULT_GENERATOR, cache)
    console.print(f"model {prepared.spec.name} sha256 {prepared.sha256[:16]}… ready")
    models = ("--models", f"{DEFAULT_MODEL},{DEFAULT_GENERATOR}")
    with tempfile.TemporaryDirectory(prefix="tokenweave-demo-") as tmp:
        root = workdir or Path(tmp)
        cluster = LocalCluster(
            root=root,
            model_cache=cache,
            coordinator_args=("--epoch-seconds", "0", *models),
            node_args=models,
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
                ask_book(client, text, question, root)
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
