"""The `tokenweave` command: argument parsing and dispatch to the subcommands.

Building the parser imports only the standard library and `tokenweave.errors`, so that `--help`,
`--version` and mistyped arguments answer at once; each command imports what it needs in
`_dispatch`, when it runs (tests/cli/test_startup.py keeps it so).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenweave import __version__
from tokenweave.cli._ask_cmd import add_ask_command
from tokenweave.cli._chat_cmd import add_chat_command
from tokenweave.cli._coordinator_args import add_coordinator_command
from tokenweave.cli._keys_cmd import add_keys_commands
from tokenweave.cli._stake_cmd import add_stake_commands
from tokenweave.errors import TokenweaveError

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _add_client_options(p: argparse.ArgumentParser, failover: bool = False) -> None:
    several = ", or several of one network, comma-separated: the node fails over" * failover
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT" + "[,...]" * failover,
        help=f"coordinator address{several} (env TOKENWEAVE_COORDINATOR; default 127.0.0.1:50051)",
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="your API key (env TOKENWEAVE_API_KEY; a coordinator's admin key is in its "
        "data dir, admin.key)",
    )
    p.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="CA of the coordinator's TLS certificate (env TOKENWEAVE_TLS_CA; unset: plaintext)",
    )


def _add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-cache",
        type=Path,
        metavar="DIR",
        help="prepared-model cache (env TOKENWEAVE_MODEL_CACHE; default ~/.cache/tokenweave)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenweave",
        description="A decentralized network for long-context AI inference.",
    )
    parser.add_argument("--version", action="version", version=f"tokenweave {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML settings file (env TOKENWEAVE_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_coordinator_command(sub, _add_cache_option)

    p = sub.add_parser("node", help="run a node daemon (or `node claim` its rewards)")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    nc = nsub.add_parser("claim", help="claim this node's rewards with its key")
    nc.add_argument("--data-dir", type=Path, default=Path("node-data"), metavar="DIR")
    nc.add_argument("--json", action="store_true")
    _add_client_options(nc)
    add_stake_commands(nsub, _add_client_options)
    _add_client_options(p, failover=True)
    p.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="holds the node key; default ./node-data"
    )
    p.add_argument(
        "--models",
        metavar="LIST",
        help="models to load, comma-separated (default all-minilm-l6-v2; smollm2-135m-instruct "
        "generates text)",
    )
    p.add_argument(
        "--serve",
        metavar="LIST",
        help="registered ONNX models to serve, comma-separated: names, * (default: every one "
        "that fits in a quarter of this machine's memory) or none",
    )
    p.add_argument("--providers", metavar="LIST", help="ONNX Runtime providers, comma-separated")
    p.add_argument(
        "--gpu", type=int, metavar="N", help="CUDA device to run on (default 0, when CUDA is there)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="windows per inference batch (default: 32 on the CPU, 256 on a GPU)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--calibration-windows",
        type=int,
        metavar="N",
        help="full windows run to measure the node's speed at start (8)",
    )
    p.add_argument(
        "--concurrent-shards",
        type=int,
        metavar="N",
        help="shards run at once, their windows batched together (default: 1 on the CPU, "
        "32 on a GPU)",
    )
    p.add_argument(
        "--batch-delay-ms",
        type=float,
        metavar="MS",
        help="on a GPU, how long a shard's windows wait for others' to join their batch "
        "(default 2)",
    )
    p.add_argument(
        "--max-inflight-shards",
        type=int,
        metavar="N",
        help="shards held at once, running or prefetched (default: twice --concurrent-shards)",
    )
    p.add_argument("--p2p-listen", metavar="MULTIADDR", help="where to serve dataset blocks")
    p.add_argument("--block-quota-bytes", type=int, metavar="N", help="cap on stored blocks")
    _add_cache_option(p)

    p = sub.add_parser("models", help="prepare and list ONNX models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    mp = msub.add_parser("prepare", help="convert models to ONNX into the cache (once)")
    mp.add_argument("names", nargs="*", metavar="NAME", help="default: every known model")
    mp.add_argument(
        "--precision",
        choices=("exact", "fast", "fp16", "both", "all"),
        default="exact",
        help="generators: which decoder to build (exact: fp32 compute; fast: int8 compute; "
        "fp16: for GPUs, built by a node on CUDA itself; both: exact and fast)",
    )
    mp.add_argument(
        "--fp16",
        action="store_true",
        help="embedders: also build the fused fp16 graph that GPU nodes run (a node on a GPU "
        "builds it itself when missing)",
    )
    _add_cache_option(mp)
    ml = msub.add_parser("cache", help="this machine's prepared models and their hashes")
    ml.add_argument("--json", action="store_true")
    _add_cache_option(ml)
    ma = msub.add_parser("add", help="register an ONNX model on the network (any modality)")
    ma.add_argument("file", type=Path, metavar="MODEL.onnx")
    ma.add_argument("--name", help="the model's name (default: the file's, without .onnx)")
    ma.add_argument(
        "--max-error",
        type=float,
        metavar="E",
        help="relative error two honest runs' outputs may differ by (default 1e-4)",
    )
    ma.add_argument("--json", action="store_true")
    _add_client_options(ma)
    mls = msub.add_parser("ls", help="the network's models and the nodes serving each")
    mls.add_argument("--json", action="store_true")
    _add_client_options(mls)

    p = sub.add_parser("submit", help="submit a job")
    ssub = p.add_subparsers(dest="submit_command", required=True, metavar="KIND")
    se = ssub.add_parser("embed", help="embed documents of any length")
    se.add_argument("files", nargs="*", type=Path, metavar="FILE")
    se.add_argument(
        "--dataset",
        metavar="CID",
        help="embed a stored dataset instead of files (JSON Lines, or a folder of .txt)",
    )
    se.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSON Lines field with the text"
    )
    se.add_argument("--model", help="model name (default all-minilm-l6-v2)")
    se.add_argument(
        "--window", type=int, help="tokens per window, [CLS]/[SEP] included (default 256)"
    )
    se.add_argument(
        "--overlap", type=int, help="tokens shared by neighbouring windows (default 32)"
    )
    se.add_argument(
        "--json", action="store_true", help="print one JSON object with every embedding"
    )
    se.add_argument("--query", metavar="TEXT", help="rank the windows by cosine to this text")
    se.add_argument("--top", type=int, default=3, help="passages to show with --query")
    _add_client_options(se)
    add_ask_command(ssub, _add_client_options)
    sm = ssub.add_parser(
        "map", help="run a registered ONNX model over a stored dataset of tensors (.npy/.npz)"
    )
    sm.add_argument("--model", required=True, help="a model registered with `models add`")
    sm.add_argument("--dataset", required=True, metavar="CID", help="the dataset's root CID")
    sm.add_argument(
        "--rows-per-task", type=int, metavar="N", help="rows a task holds (default: about 8 MiB)"
    )
    sm.add_argument("--json", action="store_true")
    _add_client_options(sm)

    add_chat_command(sub, _add_client_options)

    p = sub.add_parser("jobs", help="list your jobs")
    p.add_argument(
        "--limit",
        type=int,
        default=50,
        help="newest N jobs (50; 0: one page of the server's default size)",
    )
    p.add_argument("--all", action="store_true", help="every client's jobs (admin key)")
    p.add_argument("--json", action="store_true")
    _add_client_options(p)
    add_keys_commands(sub, _add_client_options)

    p = sub.add_parser("nodes", help="list nodes")
    p.add_argument("--json", action="store_true")
    _add_client_options(p)

    p = sub.add_parser("rewards", help="an operator's earnings, or every epoch")
    p.add_argument("address", nargs="?", help="operator address (default: list the epochs)")
    p.add_argument("--json", action="store_true")
    _add_client_options(p)

    p = sub.add_parser("epoch", help="close the open epoch now")
    esub = p.add_subparsers(dest="epoch_command", required=True, metavar="ACTION")
    ec = esub.add_parser("close", help="close the open epoch and wait until it is settled")
    ec.add_argument("--no-wait", action="store_true", help="return once the epoch is closed")
    ec.add_argument("--json", action="store_true")
    _add_client_options(ec)

    p = sub.add_parser("data", help="store and fetch content-addressed datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dp = dsub.add_parser("put", help="store a file or directory; prints its root CID last")
    dp.add_argument("path", type=Path)
    dp.add_argument("--profile", default="unixfs-v1-2025", help="unixfs-v1-2025, kubo or fastcdc")
    dp.add_argument("--json", action="store_true")
    _add_client_options(dp)
    dg = dsub.add_parser("get", help="fetch a dataset from the nodes")
    dg.add_argument("cid")
    dg.add_argument("-o", "--output", type=Path, required=True, metavar="PATH")
    _add_client_options(dg)
    dl = dsub.add_parser("ls", help="list datasets")
    dl.add_argument("--json", action="store_true")
    _add_client_options(dl)
    ds = dsub.add_parser("status", help="providers and replica count per block")
    ds.add_argument("cid")
    ds.add_argument("--json", action="store_true")
    _add_client_options(ds)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job_id")
    _add_client_options(p)

    p = sub.add_parser("testnet", help="anvil, the contracts, a coordinator and nodes on loopback")
    tsub = p.add_subparsers(dest="testnet_command", required=True, metavar="ACTION")
    tu = tsub.add_parser("up", help="start a testnet in the background")
    tu.add_argument("--nodes", type=int, default=2)
    tu.add_argument("--dir", type=Path, default=Path("testnet"), help="state, data and logs")
    tu.add_argument("--block-time", type=float, default=1.0, help="anvil seconds per block")
    _add_cache_option(tu)
    td = tsub.add_parser("down", help="stop the testnet started in --dir")
    td.add_argument("--dir", type=Path, default=Path("testnet"))

    p = sub.add_parser(
        "demo", help="a coordinator and nodes on loopback embed, search and question a book"
    )
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--text", type=Path, help="default: the shipped Book of Genesis (KJV)")
    p.add_argument("--query", help="question to answer by retrieval")
    p.add_argument("--question", help="question to answer by map-reduce with the LLM")
    p.add_argument("--workdir", type=Path, help="keep data and logs here (default: a temp dir)")
    _add_cache_option(p)
    return parser


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=_stderr(), show_path=False, rich_tracebacks=True
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s", datefmt="[%X]"))
    else:  # a log file: one plain line per record
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("sqlalchemy", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # py-libp2p logs a parallel fetch's losing dials and departed peers as errors.
    logging.getLogger("libp2p").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def _cache(args: argparse.Namespace) -> Path:
    from tokenweave.models import default_cache_dir

    return args.model_cache or default_cache_dir()


def _dispatch(args: argparse.Namespace) -> int:
    from tokenweave.cli._settings import layered, load_config_file

    file: dict[str, Any] = load_config_file(args.config)
    command = args.command
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

    from tokenweave.cli import _jobs_cmd
    from tokenweave.client import DEFAULT_MODEL, Client, default_address

    address = (
        args.coordinator
        or os.environ.get("TOKENWEAVE_COORDINATOR")
        or file.get("client", {}).get("coordinator")
        or default_address()
    )
    with Client(address, api_key=getattr(args, "api_key", None), tls_ca=args.tls_ca) as client:
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
            return _jobs_cmd.list_jobs(client, args.limit, args.json, all_clients=args.all)
        if command == "nodes":
            return _jobs_cmd.list_nodes(client, args.json)
        if command == "cancel":
            return _jobs_cmd.cancel_job(client, args.job_id)
        if command == "data":
            from tokenweave.cli import _data_cmd

            if args.data_command == "put":
                return _data_cmd.put(client, args.path, args.profile, args.json)
            if args.data_command == "get":
                return _data_cmd.get(client, args.cid, args.output)
            if args.data_command == "ls":
                return _data_cmd.ls(client, args.json)
            return _data_cmd.status(client, args.cid, args.json)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return _dispatch(args)
    except TokenweaveError as exc:
        _stderr().print(
            f"[red]error[/] ({exc.status}): {exc.message}", soft_wrap=True, highlight=False
        )
        return 2
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
