"""Client commands: `submit embed`, `jobs`, `nodes`, `cancel` (`submit ask` is _ask_cmd.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokenweave.cli._data_cmd import dataset_cid, transfer_bar
from tokenweave.cli._ids import resolve, short
from tokenweave.client import Client, DocumentEmbedding, EmbedResult, JobInfo, NodeInfo
from tokenweave.client._client import INLINE_LIMIT_BYTES
from tokenweave.client._job import Job
from tokenweave.errors import InvalidArgumentError

console = Console(stderr=True)
out = Console()


def read_documents(paths: Sequence[Path]) -> list[tuple[str, str]]:
    docs = []
    for path in paths:
        try:
            docs.append((path.name, path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InvalidArgumentError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return docs


def follow(job: Job, quiet: bool) -> JobInfo:
    """Watch the job with a live progress bar (on stderr) until it finishes (a staged job's
    total grows as its next stages are planned)."""
    if quiet:
        return job.wait()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("shards"),
        TextColumn("{task.fields[rate]:>10} tokens/s"),
        TextColumn("{task.fields[busy]} nodes busy"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"job {job.id[:8]}", total=job.info.shards_total, rate="-", busy=0)
        for info in job.watch():
            progress.update(
                task,
                total=info.shards_total,
                completed=info.shards_done,
                rate=f"{info.tokens_per_second:,.0f}",
                busy=info.nodes_busy,
            )
    return job.info


def result_json(result: EmbedResult) -> dict[str, Any]:
    job = result.job
    return {
        "job_id": job.job_id,
        "status": str(job.status),
        "model": job.model,
        "window": job.window,
        "overlap": job.overlap,
        "tokens": job.tokens,
        "tokens_processed": job.tokens_processed,
        "documents": [
            {
                "name": d.name,
                "tokens": d.tokens,
                "windows": [
                    {
                        "start": int(s[0]),
                        "end": int(s[1]),
                        "char_start": int(c[0]),
                        "char_end": int(c[1]),
                        "embedding": e.tolist(),
                    }
                    for s, c, e in zip(d.spans, d.char_spans, d.window_embeddings, strict=True)
                ],
                "embedding": d.embedding.tolist(),
            }
            for d in result.documents
        ],
        "nodes": [
            {"node_id": n.node_id, "address": n.address, "shards": n.shards, "tokens": n.tokens}
            for n in job.nodes
        ],
    }


def print_summary(result: EmbedResult) -> None:
    job = result.job
    elapsed = (
        (job.finished_at - job.created_at).total_seconds()
        if job.finished_at and job.created_at
        else 0.0
    )
    out.print(
        f"[bold green]job {job.job_id} {job.status}[/]: {job.documents} documents, "
        f"{job.tokens:,} tokens in {job.windows} windows of ≤{job.window} "
        f"(overlap {job.overlap}), {job.shards_total} shards, "
        f"{job.tokens_processed:,} model tokens in {elapsed:.1f} s "
        f"= {job.tokens_processed / elapsed if elapsed else 0:,.0f} tokens/s"
    )
    table = Table("node", "shards", "model tokens", "share", title="work per node")
    for n in job.nodes:
        share = n.tokens / job.tokens_processed if job.tokens_processed else 0.0
        table.add_row(n.address, str(n.shards), f"{n.tokens:,}", f"{share:.0%}")
    out.print(table)


@dataclass(frozen=True, slots=True)
class Passage:
    cosine: float
    document: DocumentEmbedding
    window: int

    def as_json(self) -> dict[str, Any]:
        start, end = (int(v) for v in self.document.spans[self.window])
        c0, c1 = (int(v) for v in self.document.char_spans[self.window])
        return {
            "document": self.document.name,
            "start": start,
            "end": end,
            "char_start": c0,
            "char_end": c1,
            "cosine": self.cosine,
        }


#: The name of the document `--query` adds to its job (the query's text, embedded with the rest).
QUERY_DOCUMENT = "--query"


def rank_windows(result: EmbedResult, query: DocumentEmbedding, top: int) -> list[Passage]:
    """The `top` windows of `result` closest to the query's embedding."""
    q = query.embedding
    scored = [
        Passage(float(score), doc, i)
        for doc in result.documents
        for i, score in enumerate(doc.window_embeddings @ q)
    ]
    scored.sort(key=lambda p: -p.cosine)
    return scored[:top]


def print_passages(passages: Sequence[Passage], texts: Sequence[str], query: str) -> None:
    """Each passage whole (a window: at most --window tokens)."""
    out.print(f"\n[bold]Best passages for[/] {query!r}:")
    for rank, p in enumerate(passages, 1):
        span = p.as_json()
        c0, c1 = span["char_start"], span["char_end"]
        text = " ".join(texts[p.document.index][c0:c1].split())
        out.print(
            f"\n[bold cyan]{rank}. {p.document.name} tokens [{span['start']}, {span['end']}) "
            f"chars [{c0}, {c1})  cosine {p.cosine:.4f}[/]\n{text}"
        )


def submit_embed(
    client: Client,
    paths: Sequence[Path],
    *,
    model: str,
    window: int | None,
    overlap: int | None,
    as_json: bool,
    query: str | None,
    top: int,
    dataset: str | None = None,
    text_field: str = "text",
) -> int:
    if top < 1:
        raise InvalidArgumentError(f"--top {top} must be at least 1")
    if bool(paths) == bool(dataset):
        raise InvalidArgumentError("give FILEs or --dataset CID (one of them)")
    if dataset:
        if query:
            raise InvalidArgumentError(
                "--query shows passages of the texts, which a --dataset job leaves on the "
                "nodes: use it with FILEs"
            )
        docs = []
        job = client.embed_dataset(
            dataset_cid(client, dataset),
            text_field=text_field,
            model=model,
            window=window,
            overlap=overlap,
        )
    else:
        docs = read_documents(paths)
        # The query is embedded in the same job, as one more document: one job, one bill.
        sent = [*docs, (QUERY_DOCUMENT, query)] if query else docs
        size = sum(len(name.encode()) + len(text.encode()) for name, text in sent)
        streamed = size > INLINE_LIMIT_BYTES
        with transfer_bar(disable=as_json or not streamed) as bar:
            task = bar.add_task(f"upload {len(docs)} documents", total=size)
            job = client.embed(
                sent,
                model=model,
                window=window,
                overlap=overlap,
                progress=lambda n: bar.advance(task, n),
            )
    if not as_json:
        console.print(
            f"submitted job {job.id}: {job.info.tokens:,} tokens, {job.info.windows} windows, "
            f"{job.info.shards_total} shards"
        )
    try:
        follow(job, quiet=as_json)
    except KeyboardInterrupt:
        console.print(
            f"interrupted: job {job.id} keeps running (`tokenweave cancel {job.id}` stops it)"
        )
        raise
    result = job.result()
    passages = []
    if query:
        *texts, asked = result.documents
        result = dataclasses.replace(result, documents=tuple(texts))
        passages = rank_windows(result, asked, top)
    if as_json:
        payload = result_json(result)
        if query:
            payload["query"] = {"text": query, "passages": [p.as_json() for p in passages]}
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print_summary(result)
    if query:
        print_passages(passages, [text for _, text in docs], query)
    return 0


def _job_row(j: JobInfo) -> dict[str, Any]:
    return {
        "job_id": j.job_id,
        "status": str(j.status),
        "model": j.model,
        "documents": j.documents,
        "tokens": j.tokens,
        "windows": j.windows,
        "shards_done": j.shards_done,
        "shards_total": j.shards_total,
        "created_at": j.created_at.isoformat() if j.created_at else None,
        "finished_at": j.finished_at.isoformat() if j.finished_at else None,
        "error": j.error,
    }


def list_jobs(
    client: Client, limit: int, as_json: bool, all_clients: bool = False, wide: bool = False
) -> int:
    jobs = client.jobs(limit, all_clients=all_clients)
    if as_json:
        json.dump([_job_row(j) for j in jobs], sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table("job", "status", "model", "docs", "tokens", "shards", "created", "error")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 32 if wide else None
    for j in jobs:
        created = j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else ""
        table.add_row(
            short(j.job_id, "job", wide),
            str(j.status),
            j.model,
            str(j.documents),
            f"{j.tokens:,}",
            f"{j.shards_done}/{j.shards_total}",
            created,
            j.error,
        )
    out.print(table)
    return 0


def _node_row(n: NodeInfo) -> dict[str, Any]:
    return {
        "node_id": n.node_id,
        "address": n.address,
        "online": n.online,
        "cpu_cores": n.cpu_cores,
        "memory_bytes": n.memory_bytes,
        "gpus": list(n.gpus),
        "providers": list(n.providers),
        "models": n.speeds,
        "shards_running": n.shards_running,
        "shards_done": n.shards_done,
        "tokens_processed": n.tokens_processed,
        "last_seen": n.last_seen.isoformat() if n.last_seen else None,
        "version": n.version,
        "peer_id": n.peer_id,
        "multiaddrs": list(n.multiaddrs),
        "reputation": n.reputation,
        "audits_passed": n.audits_passed,
        "audits_failed": n.audits_failed,
        "verifications_passed": n.verifications_passed,
        "verifications_failed": n.verifications_failed,
        "withheld": n.withheld,
    }


def _reputation(n: NodeInfo) -> str:
    """`0.50`, then what cut it: wrong outputs and failed audits, and withheld rewards."""
    cell = f"{n.reputation:.2f}"
    if n.verifications_failed:
        verified = n.verifications_passed + n.verifications_failed
        cell += f", {n.verifications_failed}/{verified} wrong"
    if n.audits_failed:
        cell += f", {n.audits_failed}/{n.audits_passed + n.audits_failed} audits failed"
    return cell + (" [red]withheld[/]" if n.withheld else "")


def list_nodes(client: Client, as_json: bool, wide: bool = False) -> int:
    nodes = client.nodes()
    if as_json:
        json.dump([_node_row(n) for n in nodes], sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table(
        "address",
        "state",
        "hardware",
        "tokens/s",
        "running",
        "done",
        "tokens",
        "reputation",
    )
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    table.columns[0].min_width = 42 if wide else None
    for n in nodes:
        hardware = f"{n.cpu_cores} cores, {n.memory_bytes / 2**30:.0f} GiB"
        if n.gpus:
            hardware += ", " + ", ".join(n.gpus)
        speeds = ", ".join(f"{m}: {s:,.0f}" for m, s in n.speeds.items())
        table.add_row(
            short(n.address, "address", wide),
            "[green]online[/]" if n.online else "[red]offline[/]",
            hardware,
            speeds,
            str(n.shards_running),
            str(n.shards_done),
            f"{n.tokens_processed:,}",
            _reputation(n),
        )
    out.print(table)
    return 0


#: Jobs looked through for a prefix (the caller's newest).
PREFIX_JOBS = 1000


def job_id(client: Client, given: str) -> str:
    """The job id `given` starts: a unique prefix of one of the caller's newest jobs."""
    if len(given) == 32:
        return given
    return resolve(given, (j.job_id for j in client.jobs(PREFIX_JOBS)), "job id")


def cancel_job(client: Client, given: str) -> int:
    info = client.cancel(job_id(client, given))
    out.print(f"job {info.job_id} {info.status}")
    return 0
