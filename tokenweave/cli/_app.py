"""The `tokenweave` command: dispatch to the subcommands, and the exit status of each outcome.

The parser is `_parser.py`. Each command imports what it needs here, when it runs, so that
`--help`, `--version` and mistyped arguments answer at once (tests/cli/test_startup.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenweave.cli._parser import build_parser
from tokenweave.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    JobFailedError,
    TokenweaveError,
    UnavailableError,
)

if TYPE_CHECKING:
    from rich.console import Console

#: Exit statuses (`_parser.EXIT_CODES` says what each means).
EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_JOB_FAILED = 1, 2, 3, 4, 5
_REFUSED = {
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "ALREADY_EXISTS",
}
#: What gRPC says when nothing listens at an address, or the name does not resolve.
_NOTHING_THERE = (
    "failed to connect to all addresses",
    "DNS resolution failed",
    "Connection refused",
)


@functools.cache
def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _cache(args: argparse.Namespace) -> Path:
    from tokenweave.models import default_cache_dir

    return args.model_cache or default_cache_dir()


def _dispatch(args: argparse.Namespace) -> int:
    from tokenweave.cli._settings import check_config_file, layered, load_config_file

    file: dict[str, Any] = load_config_file(args.config)
    check_config_file(file)
    command = args.command
    if command == "completion":
        import shtab

        sys.stdout.write(shtab.complete(build_parser(), args.shell))
        return 0
    if command == "tls":
        from tokenweave.cli._tls_cmd import init

        return init(args.dir, args.host)
    if command == "coordinator":
        from tokenweave.cli._servers import run_coordinator
        from tokenweave.coordinator import CoordinatorConfig

        return run_coordinator(layered(CoordinatorConfig, "coordinator", vars(args), file))
    if command == "node" and args.node_command is None:
        from tokenweave.cli._servers import run_node
        from tokenweave.node import NodeConfig

        return run_node(layered(NodeConfig, "node", vars(args), file))
    if command == "models":
        from tokenweave.cli import _models_cmd

        if args.models_command == "prepare":
            return _models_cmd.prepare(args.names, _cache(args), args.precision, args.fp16)
        if args.models_command == "cache":
            return _models_cmd.list_models(_cache(args), args.json)
    if command == "testnet":
        from tokenweave.cli import _testnet

        if args.testnet_command == "up":
            return _testnet.up(args.dir, args.nodes, args.model_cache, args.block_time)
        return _testnet.down(args.dir)
    if command == "demo":
        from tokenweave.cli._demo import DEFAULT_QUERY, DEFAULT_QUESTION, run_demo

        return run_demo(
            args.nodes,
            args.text,
            args.query or DEFAULT_QUERY,
            args.question or DEFAULT_QUESTION,
            args.workdir,
            args.model_cache,
        )

    from tokenweave._address import parse_address
    from tokenweave.cli import _jobs_cmd
    from tokenweave.client import DEFAULT_MODEL, Client, default_address

    client_file = file.get("client", {})
    address = parse_address(
        getattr(args, "coordinator", None)
        or os.environ.get("TOKENWEAVE_COORDINATOR")
        or client_file.get("coordinator")
        or default_address(),
        "--coordinator",
    )
    args.resolved_coordinator = address
    if command == "node":  # an action for a node's key: its data dir, wherever the flag stood
        args.data_dir = args.data_dir or Path("node-data")
    api_key = getattr(args, "api_key", None) or client_file.get("api_key")
    tls_ca = getattr(args, "tls_ca", None) or client_file.get("tls_ca")
    if command == "doctor":
        from tokenweave.cli import _doctor

        ca = Path(tls_ca) if tls_ca else None
        return _doctor.run(address, api_key, ca, args.data_dir, _cache(args), args.json)
    with Client(address, api_key=api_key, tls_ca=tls_ca) as client:
        if command == "chat":
            from tokenweave.cli import _chat_cmd

            return _chat_cmd.run(client, args)
        if command in ("whoami", "keys"):
            from tokenweave.cli import _keys_cmd

            return _keys_cmd.run(client, args)
        if command == "submit" and args.submit_command == "map":
            from tokenweave.cli import _models_cmd

            return _models_cmd.submit_map(
                client, args.model, args.dataset, args.rows_per_task, args.json
            )
        if command == "submit" and args.submit_command == "ask":
            from tokenweave.cli import _ask_cmd

            return _ask_cmd.submit_ask(client, args)
        if command == "submit":
            return _jobs_cmd.submit_embed(
                client,
                args.files,
                dataset=args.dataset,
                text_field=args.text_field,
                model=args.model or DEFAULT_MODEL,
                window=args.window,
                overlap=args.overlap,
                as_json=args.json,
                query=args.query,
                top=args.top,
            )
        if command == "models":
            from tokenweave.cli import _models_cmd

            if args.models_command == "add":
                return _models_cmd.add(client, args.file, args.name, args.max_error, args.json)
            return _models_cmd.network(client, args.json)
        if command == "jobs":
            return _jobs_cmd.list_jobs(
                client, args.limit, args.json, all_clients=args.all, wide=args.wide
            )
        if command == "nodes":
            return _jobs_cmd.list_nodes(client, args.json, wide=args.wide)
        if command == "cancel":
            return _jobs_cmd.cancel_job(client, args.job_id)
        if command == "data":
            from tokenweave.cli import _data_cmd

            if args.data_command == "put":
                return _data_cmd.put(client, args.path, args.profile, args.json)
            if args.data_command == "get":
                return _data_cmd.get(client, args.cid, args.output)
            if args.data_command == "ls":
                return _data_cmd.ls(client, args.json, wide=args.wide)
            return _data_cmd.status(client, args.cid, args.json, wide=args.wide)
        from tokenweave.cli import _rewards_cmd

        if command == "rewards":
            return _rewards_cmd.show_rewards(client, args.address, args.json)
        if command == "epoch":
            return _rewards_cmd.close_epoch(client, wait=not args.no_wait, as_json=args.json)
        if command == "node" and args.node_command != "claim":
            from tokenweave.cli import _stake_cmd

            return _stake_cmd.run(client, args)
        if command == "node":
            return _rewards_cmd.claim(client, args.data_dir, args.json)
    raise AssertionError(f"unhandled command {command}")


def exit_status(exc: TokenweaveError) -> int:
    """The exit status of a command that raised `exc`."""
    if isinstance(exc, JobFailedError):
        return EXIT_JOB_FAILED
    if isinstance(exc, UnavailableError | DeadlineExceededError):
        return EXIT_UNREACHABLE
    if isinstance(exc, InvalidArgumentError):
        return EXIT_USAGE
    if exc.status in _REFUSED:
        return EXIT_REFUSED
    return EXIT_ERROR


def explain(exc: TokenweaveError, address: str | None) -> str:
    """One line for the user: what went wrong, and for an address nothing answers at, what
    to do about it."""
    if isinstance(exc, UnavailableError) and any(s in exc.message for s in _NOTHING_THERE):
        where = address or "the coordinator's address"
        return (
            f"nothing answers at {where}: is a coordinator running there? Start one with "
            "`tokenweave coordinator`, or a whole local network with `tokenweave testnet up`; "
            "--coordinator (or TOKENWEAVE_COORDINATOR) says where to look"
        )
    return f"{exc.message} ({exc.status})"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tokenweave._logs import setup_logging

    setup_logging(args.verbose, args.log_format)
    try:
        return _dispatch(args)
    except TokenweaveError as exc:
        address = getattr(args, "resolved_coordinator", None)
        _stderr().print(f"[red]error:[/] {explain(exc, address)}", soft_wrap=True, highlight=False)
        return exit_status(exc)
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
