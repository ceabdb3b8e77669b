"""`tokenweave submit ask`: a question over documents of any length, answered by map-reduce.

    tokenweave submit ask book.txt --question "Who was Abram's wife?"
    tokenweave submit ask --dataset CID --question "…"

Each window of the documents is a map task on some node (what it says about the question);
the notes are combined, level by level, until one prompt gives the answer. The answer prints
with the windows (character spans) it drew on; `--json` prints it as one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from tokenweave.client import Answer, Client

console = Console(stderr=True)
out = Console()

#: Characters of each source shown under the answer.
EXCERPT_CHARS = 240


def add_ask_command(
    ssub: Any, add_client_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = ssub.add_parser("ask", help="ask a question over documents of any length (map-reduce)")
    p.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="UTF-8 text files, any length"
    )
    p.add_argument("--question", "-q", required=True, help="what to ask")
    p.add_argument("--dataset", metavar="CID", help="ask over a stored dataset instead of files")
    p.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSON Lines field with the text"
    )
    p.add_argument("--model", help="generator name (default smollm2-135m-instruct)")
    p.add_argument("--window", type=int, help="tokens per map window (1024)")
    p.add_argument("--overlap", type=int, help="tokens shared by neighbouring windows (32)")
    p.add_argument("--note-tokens", type=int, metavar="N", help="longest note per window (64)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="longest answer in tokens (128)")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    add_client_options(p)


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "job": answer.job.job_id,
        "answer": answer.text,
        "finish_reason": answer.finish_reason,
        "sources": [
            {"document": s.document, "name": s.name, "start": s.start, "end": s.end}
            for s in answer.sources
        ],
        "tokens": answer.job.tokens,
        "shards": answer.job.shards_total,
    }


def best_line(window: str, answer: str) -> str:
    """The line of a window sharing the most words with the answer (where it is said)."""
    words = set(answer.lower().split())
    lines = [" ".join(line.split()) for line in window.splitlines() if line.strip()]
    return max(lines, key=lambda line: len(words & set(line.lower().split())), default="")


def print_answer(answer: Answer, texts: Sequence[str]) -> None:
    if answer.finish_reason == "unanswered":
        out.print("[yellow]No window of the documents bore on the question.[/]")
        return
    out.print(f"\n[bold]Answer[/]: {answer.text}")
    if answer.finish_reason == "length":
        out.print("[dim](cut at --max-tokens)[/]")
    out.print(f"\n[bold]Drawn from {len(answer.sources)} windows[/]:")
    for source in answer.sources:
        out.print(f"[cyan]{source.name or source.document}[/] chars [{source.start}, {source.end})")
        if source.document < len(texts):
            line = best_line(texts[source.document][source.start : source.end], answer.text)
            out.print(f"  [dim]{line[:EXCERPT_CHARS]}{'…' if len(line) > EXCERPT_CHARS else ''}[/]")


def submit_ask(client: Client, args: argparse.Namespace) -> int:
    from tokenweave.cli._jobs_cmd import follow, read_documents
    from tokenweave.client import DEFAULT_GENERATOR
    from tokenweave.errors import InvalidArgumentError

    if bool(args.files) == bool(args.dataset):
        raise InvalidArgumentError("give FILEs or --dataset CID (one of them)")
    docs = read_documents(args.files) if args.files else []
    options = {
        name: value
        for name, value in (
            ("window", args.window),
            ("overlap", args.overlap),
            ("note_tokens", args.note_tokens),
            ("max_tokens", args.max_tokens),
        )
        if value is not None
    }
    job = client.ask(
        docs,
        args.question,
        model=args.model or DEFAULT_GENERATOR,
        dataset=args.dataset or "",
        text_field=args.text_field,
        **options,
    )
    if not args.json:
        console.print(
            f"submitted job {job.id}: {job.info.tokens:,} tokens in {job.info.shards_total} "
            "windows, each a map task; reduce tasks follow"
        )
    try:
        follow(job, quiet=args.json)
    except KeyboardInterrupt:
        console.print(
            f"interrupted: job {job.id} keeps running (`tokenweave cancel {job.id}` stops it)"
        )
        raise
    answer = job.answer()
    if args.json:
        json.dump(answer_json(answer), sys.stdout)
        sys.stdout.write("\n")
    else:
        print_answer(answer, [text for _, text in docs])
    return 0
