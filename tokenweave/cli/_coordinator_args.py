"""The `tokenweave coordinator` command's flags: each is a `CoordinatorConfig` field of the same
name (also settable as TOKENWEAVE_<FIELD> or in the TOML file's [coordinator] table)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_coordinator_command(
    sub: Any, add_cache_option: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser("coordinator", help="run a coordinator")
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="default 127.0.0.1:50051; port 0 picks one"
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="default ./coordinator-data")
    p.add_argument(
        "--http-listen",
        metavar="HOST:PORT",
        help="serve the OpenAI API over HTTP there (off by default; TLS with --tls-cert)",
    )
    p.add_argument(
        "--models",
        metavar="LIST",
        help="models served, comma-separated (default all-minilm-l6-v2; smollm2-135m-instruct "
        "generates text)",
    )
    p.add_argument(
        "--db", metavar="URL", help="SQLAlchemy async URL (default: SQLite in the data dir)"
    )
    p.add_argument(
        "--max-document-bytes",
        type=int,
        metavar="N",
        help="largest document a job may hold, in bytes (default 8 MiB)",
    )
    p.add_argument(
        "--windows-per-shard",
        type=int,
        metavar="N",
        help="embedding windows a task holds (default 16); fewer spread a job wider",
    )
    p.add_argument(
        "--chain",
        metavar="RPC_URL",
        help='"embedded" (default: an in-process EVM) or any EVM JSON-RPC endpoint',
    )
    p.add_argument(
        "--chain-key",
        metavar="HEX",
        help="key that deploys the contracts and holds their admin role (env TOKENWEAVE_CHAIN_KEY)",
    )
    p.add_argument(
        "--poster-key",
        metavar="HEX",
        help="key that posts roots and slashes (env TOKENWEAVE_POSTER_KEY; default the chain key)",
    )
    p.add_argument(
        "--unbonding-delay-s",
        type=int,
        metavar="S",
        help="new deployments: seconds unstaked tokens stay slashable (dev 60, else 7 days)",
    )
    p.add_argument(
        "--max-mint-per-epoch-wei",
        type=int,
        metavar="WEI",
        help="new deployments: most one epoch's root may announce (10**24)",
    )
    p.add_argument(
        "--epoch-seconds", type=float, metavar="S", help="close an epoch this often; 0: on command"
    )
    p.add_argument(
        "--confirmations", type=int, metavar="N", help="blocks before an epoch counts as settled"
    )
    p.add_argument(
        "--prices",
        metavar="LIST",
        help="MODEL=TOKENS_PER_1000[/OUTPUT_TOKENS_PER_1000][,...]: reward per 1,000 input "
        "(and generated) tokens; *=PRICE: registered ONNX models, per 1,000 items (default "
        "all-minilm-l6-v2=1,smollm2-135m-instruct=0.5/2,*=1)",
    )
    p.add_argument(
        "--faucet-wei", type=int, metavar="WEI", help="development chains: gas money per claimer"
    )
    p.add_argument("--replicas", type=int, metavar="N", help="copies of each dataset block (3)")
    p.add_argument(
        "--repair-grace-s",
        type=float,
        metavar="S",
        help="seconds a provider may be gone before its blocks are copied again (60)",
    )
    p.add_argument(
        "--custody-interval-s", type=float, metavar="S", help="seconds between repair rounds (10)"
    )
    p.add_argument("--audits-per-round", type=int, metavar="N", help="possession audits (4)")
    p.add_argument(
        "--verify-fraction", type=float, metavar="F", help="shards run twice and compared (0.1)"
    )
    p.add_argument(
        "--new-node-tokens-per-second",
        type=float,
        metavar="R",
        help="speed believed of a node until it has finished a shard (1000; then 2x what it did)",
    )
    p.add_argument(
        "--vetting-results",
        type=int,
        metavar="N",
        help="a new node's work is all verified until N of its results agreed (10)",
    )
    p.add_argument(
        "--verify-tolerance", type=float, metavar="COS", help="per-window cosine to agree (0.9999)"
    )
    p.add_argument(
        "--straggler-factor",
        type=float,
        metavar="X",
        help="backup a run past X times its expected time (3)",
    )
    p.add_argument("--straggler-slack-s", type=float, metavar="S", help="... plus S seconds (2)")
    p.add_argument(
        "--min-reputation", type=float, metavar="R", help="refuse nodes below this (0.2)"
    )
    p.add_argument("--heartbeat-misses", type=int, metavar="N", help="silent intervals (3)")
    add_cache_option(p)

    _add_trust_flags(p)


def _add_trust_flags(p: argparse.ArgumentParser) -> None:
    """TLS, clients, quotas, disputes and stakes (see docs/ARCHITECTURE.md, "Trust")."""
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate for the port")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help="mutual TLS: callers must show a certificate this CA signed",
    )
    p.add_argument(
        "--rate-limit", type=float, metavar="N", help="calls a second per client or host (50)"
    )
    p.add_argument("--rate-burst", type=float, metavar="N", help="... in bursts of N (200)")
    p.add_argument(
        "--max-concurrent-jobs", type=int, metavar="N", help="per client, queued or running (8)"
    )
    p.add_argument(
        "--max-tokens-per-job", type=int, metavar="N", help="model tokens per job (20,000,000)"
    )
    p.add_argument(
        "--max-tokens-per-hour",
        type=int,
        metavar="N",
        help="model tokens a client may submit an hour (100,000,000)",
    )
    p.add_argument(
        "--max-message-bytes", type=int, metavar="N", help="largest gRPC message (64 MiB)"
    )
    p.add_argument(
        "--max-connections", type=int, metavar="N", help="open connections at most (512)"
    )
    p.add_argument(
        "--max-watch-streams", type=int, metavar="N", help="WatchJob streams at most (1000)"
    )
    p.add_argument(
        "--max-watch-streams-per-client", type=int, metavar="N", help="... per client (32)"
    )
    p.add_argument(
        "--max-dataset-bytes",
        type=int,
        metavar="N",
        help="bytes a dataset job may read (256 MiB)",
    )
    p.add_argument(
        "--max-model-bytes",
        type=int,
        metavar="N",
        help="largest ONNX model file a client may register (1 GiB)",
    )
    p.add_argument(
        "--max-upload-bytes", type=int, metavar="N", help="bytes an upload may describe (64 GiB)"
    )
    p.add_argument(
        "--max-stored-bytes",
        type=int,
        metavar="N",
        help="bytes of datasets one client may upload (10 GiB)",
    )
    p.add_argument(
        "--dispute-wait-s",
        type=float,
        metavar="S",
        help="give a dispute no node or referee decided up after S seconds (60)",
    )
    p.add_argument(
        "--no-referee",
        dest="referee",
        action="store_const",
        const=False,
        help="never run a disputed shard on the coordinator itself",
    )
    p.add_argument(
        "--min-stake", type=int, metavar="WEI", help="stake a node needs to get work (0: none)"
    )
    p.add_argument(
        "--stake-for-full-share",
        type=int,
        metavar="WEI",
        help="stake that earns a node its full share of work (0: off)",
    )
    p.add_argument(
        "--slash-fraction", type=float, metavar="F", help="stake a caught node loses (0.5)"
    )
