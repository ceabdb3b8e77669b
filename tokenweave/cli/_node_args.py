"""The `tokenweave node` command's flags: each is a `NodeConfig` field of the same name (also
settable as TOKENWEAVE_<FIELD> or in the TOML file's [node] table), and its actions for the
node's key (claim, stake, unstake, withdraw)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenweave.cli._stake_cmd import add_stake_commands

AddOptions = Callable[..., None]


def add_node_command(
    sub: Any,
    add_client_options: AddOptions,
    add_node_key_options: Callable[[argparse.ArgumentParser], None],
    add_cache_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser("node", help="run a node daemon (or `node claim` its rewards)")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    nc = nsub.add_parser("claim", help="claim this node's rewards with its key")
    add_node_key_options(nc)
    add_stake_commands(nsub, add_node_key_options)
    add_client_options(p, failover=True)
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="holds the node's key, made at its first start (default ./node-data)",
    )
    p.add_argument("--json", action="store_true", help="node actions: print one JSON object")
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
    p.add_argument(
        "--providers",
        metavar="LIST",
        help="ONNX Runtime providers in order of preference, comma-separated, e.g. "
        "CUDAExecutionProvider,CPUExecutionProvider (default: CUDA when a GPU is there, else CPU)",
    )
    p.add_argument(
        "--gpu", type=int, metavar="N", help="CUDA device to run on (default 0, when CUDA is there)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="windows per inference batch (default: 32 on the CPU, 256 on a GPU)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="ONNX Runtime intra-op threads (default: one a physical core)",
    )
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
    p.add_argument(
        "--p2p-listen",
        metavar="MULTIADDR",
        help="where to serve dataset blocks to peers (default /ip4/127.0.0.1/tcp/0)",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST[:PORT]",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (port defaults to 9464; "
        "off by default)",
    )
    p.add_argument(
        "--block-quota-bytes",
        type=int,
        metavar="N",
        help="most bytes of dataset blocks kept (default: no limit)",
    )
    add_cache_option(p)
