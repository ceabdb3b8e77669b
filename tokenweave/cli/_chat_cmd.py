"""`tokenweave chat`: talk to the network's text generator, one question or a conversation.

    tokenweave chat "What is the capital of France?"     one reply, then exit
    tokenweave chat                                      a conversation (Ctrl-D or /quit ends it)

Each reply is a generation job on the nodes (`Client.chat`); the conversation so far is sent
with each turn. Replies print as the node generates them (`--json`: once, with token counts).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenweave.client import Client, Completion


def add_chat_command(
    sub: Any, add_client_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser("chat", help="ask the network's text generator (one question, or a talk)")
    p.add_argument("message", nargs="?", help="one message; without it, a conversation")
    p.add_argument("--system", help="a system message first (the model's own default otherwise)")
    p.add_argument("--model", help="generator name (default smollm2-135m-instruct)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="longest reply in tokens (256)")
    p.add_argument("--temperature", type=float, help="0 (the default) is greedy")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass, in (0, 1]")
    p.add_argument("--seed", type=int, help="sampling seed: the same seed, the same reply")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at TEXT")
    p.add_argument("--json", action="store_true", help="one reply as JSON, with token counts")
    add_client_options(p)


def _reply(
    client: Client, history: list[dict[str, str]], args: argparse.Namespace, show: bool = False
) -> Completion:
    from tokenweave.client import DEFAULT_GENERATOR

    params: dict[str, Any] = {
        name: value
        for name, value in (
            ("max_tokens", args.max_tokens),
            ("temperature", args.temperature),
            ("top_p", args.top_p),
            ("seed", args.seed),
        )
        if value is not None
    }
    job = client.chat(history, model=args.model or DEFAULT_GENERATOR, stop=args.stop, **params)
    if show:
        for piece in job.stream():
            print(piece, end="", flush=True)
        print()
    return job.completion()


def run(client: Client, args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    history = [{"role": "system", "content": args.system}] if args.system else []
    if args.message is not None:
        history.append({"role": "user", "content": args.message})
        if not args.json:
            _reply(client, history, args, show=True)
            return 0
        with console.status("generating on the network"):
            reply = _reply(client, history, args)
        json.dump(
            {
                "text": reply.text,
                "finish_reason": reply.finish_reason,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
        return 0
    console.print("[dim]a conversation with the network; Ctrl-D or /quit ends it[/dim]")
    while True:
        try:
            message = input("you> ")
        except EOFError:
            print()
            return 0
        if message.strip() in ("/quit", "/exit"):
            return 0
        if not message.strip():
            continue
        history.append({"role": "user", "content": message})
        reply = _reply(client, history, args, show=True)
        history.append({"role": "assistant", "content": reply.text})
