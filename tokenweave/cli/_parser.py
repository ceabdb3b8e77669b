"""The `tokenweave` command line: every command's arguments, with help for each.

Building the parser imports only the standard library and `tokenweave.errors`, so that `--help`,
`--version` and mistyped arguments answer at once (tests/cli/test_startup.py keeps it so).

What holds everywhere: a flag means the same wherever it stands (`node --data-dir X claim` and
`node claim --data-dir X` are one command: options an action shares with its parent default to
"not given", so the parent's value stands); a misspelled command or choice is answered with the
closest ones; every option says what it does and its default.
"""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path
from typing import Any

from tokenweave import __version__
from tokenweave.cli._ask_cmd import add_ask_command
from tokenweave.cli._chat_cmd import add_chat_command
from tokenweave.cli._coordinator_args import add_coordinator_command
from tokenweave.cli._keys_cmd import add_keys_commands
from tokenweave.cli._node_args import add_node_command

#: Exit statuses (README, "Exit codes").
EXIT_CODES = """exit codes:
  0  success
  1  an error not listed below (a bug: please report it)
  2  usage: a bad command line, config file or argument (INVALID_ARGUMENT)
  3  unreachable: no coordinator answers at the address (UNAVAILABLE)
  4  refused: the coordinator refused the request (NOT_FOUND, PERMISSION_DENIED,
     UNAUTHENTICATED, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, ALREADY_EXISTS)
  5  the job ended FAILED or CANCELLED
  130  interrupted (Ctrl-C)"""

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help, when it has one worth saying and the help does not
    say it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" not in text
            and "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
            and action.nargs != 0
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that answers a misspelled command or choice with the closest ones."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        found = _INVALID_CHOICE.search(message)
        if found:
            given = found.group(1)
            choices = re.findall(r"'([^']*)'", found.group(2))
            close = difflib.get_close_matches(given, choices, n=3, cutoff=0.5)
            if close:
                message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        super().error(message)


def _add_client_options(
    p: argparse.ArgumentParser, failover: bool = False, shared: bool = False
) -> None:
    """--coordinator, --api-key, --tls-ca. `shared`: the parent command has them too, and a
    value given there stands unless given again here."""
    several = ", or several of one network, comma-separated: the node fails over" * failover
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if shared else {}
    p.add_argument(
        "--coordinator",
        metavar="HOST[:PORT]" + "[,...]" * failover,
        help=f"coordinator address{several} (env TOKENWEAVE_COORDINATOR; default "
        "127.0.0.1:50051; the port defaults to 50051)",
        **unset,
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="your API key (env TOKENWEAVE_API_KEY; a coordinator's admin key is in its "
        "data dir, admin.key)",
        **unset,
    )
    p.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="CA of the coordinator's TLS certificate (env TOKENWEAVE_TLS_CA; unset: plaintext)",
        **unset,
    )


def _add_wide_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wide",
        action="store_true",
        help="show ids and addresses whole (tables show their first characters, which any "
        "command takes back)",
    )


def _add_node_key_options(p: argparse.ArgumentParser) -> None:
    """What a node action (claim, stake, ...) shares with `node`: its data dir and output."""
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the node's data dir, which holds its key (default ./node-data; never made here)",
    )
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object"
    )
    _add_client_options(p, shared=True)


def _add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-cache",
        type=Path,
        metavar="DIR",
        help="prepared-model cache (env TOKENWEAVE_MODEL_CACHE; default ~/.cache/tokenweave)",
    )


def build_parser() -> Parser:
    parser = Parser(
        prog="tokenweave",
        description="A decentralized network for long-context AI inference.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"tokenweave {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="daemons' log lines: text, or one JSON object a line (with job, shard and node ids)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file, [coordinator] [node] [client] tables (env TOKENWEAVE_CONFIG)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_coordinator_command(sub, _add_cache_option)

    add_node_command(sub, _add_client_options, _add_node_key_options, _add_cache_option)

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
    ml.add_argument("--json", action="store_true", help="print JSON")
    _add_cache_option(ml)
    ma = msub.add_parser("add", help="register an ONNX model on the network (any modality)")
    ma.add_argument("file", type=Path, metavar="MODEL.onnx", help="the ONNX file to register")
    ma.add_argument("--name", help="the model's name (default: the file's, without .onnx)")
    ma.add_argument(
        "--max-error",
        type=float,
        metavar="E",
        help="relative error two honest runs' outputs may differ by (default 1e-4)",
    )
    ma.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(ma)
    mls = msub.add_parser("ls", help="the network's models and the nodes serving each")
    mls.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(mls)

    p = sub.add_parser("submit", help="submit a job")
    ssub = p.add_subparsers(dest="submit_command", required=True, metavar="KIND")
    se = ssub.add_parser("embed", help="embed documents of any length")
    se.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="UTF-8 text files, any length"
    )
    se.add_argument(
        "--dataset",
        metavar="CID",
        help="embed a stored dataset instead of files (JSON Lines, or a folder of .txt)",
    )
    se.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSON Lines field with the text"
    )
    se.add_argument("--model", metavar="NAME", help="model name (default all-minilm-l6-v2)")
    se.add_argument(
        "--window", type=int, help="tokens per window, [CLS]/[SEP] included (default 256)"
    )
    se.add_argument(
        "--overlap", type=int, help="tokens shared by neighbouring windows (default 32)"
    )
    se.add_argument(
        "--json", action="store_true", help="print one JSON object with every embedding"
    )
    se.add_argument(
        "--query",
        metavar="TEXT",
        help="then rank the windows by cosine to TEXT and show the best (TEXT is embedded in "
        "the same job, one more document; FILEs only, not --dataset)",
    )
    se.add_argument(
        "--top", type=int, default=3, metavar="N", help="passages --query shows, each in full"
    )
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
    sm.add_argument("--json", action="store_true", help="print one JSON object")
    _add_client_options(sm)

    add_chat_command(sub, _add_client_options)

    p = sub.add_parser("jobs", help="list your jobs")
    p.add_argument(
        "--limit",
        type=int,
        default=50,
        metavar="N",
        help="newest N jobs (0: one page of the server's default size)",
    )
    p.add_argument("--all", action="store_true", help="every client's jobs (admin key)")
    _add_wide_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(p)
    add_keys_commands(sub, _add_client_options)

    p = sub.add_parser("nodes", help="list nodes")
    _add_wide_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(p)

    p = sub.add_parser("rewards", help="an operator's earnings, or every epoch")
    p.add_argument(
        "address",
        nargs="?",
        help="operator address, or the first characters of a node's (default: list the epochs)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(p)

    p = sub.add_parser("epoch", help="close the open epoch now")
    esub = p.add_subparsers(dest="epoch_command", required=True, metavar="ACTION")
    ec = esub.add_parser("close", help="close the open epoch and wait until it is settled")
    ec.add_argument("--no-wait", action="store_true", help="return once the epoch is closed")
    ec.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(ec)

    p = sub.add_parser("data", help="store and fetch content-addressed datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dp = dsub.add_parser("put", help="store a file or directory; prints its root CID last")
    dp.add_argument("path", type=Path, help="a file or a directory")
    dp.add_argument("--profile", default="unixfs-v1-2025", help="unixfs-v1-2025, kubo or fastcdc")
    dp.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(dp)
    dg = dsub.add_parser("get", help="fetch a dataset from the nodes")
    dg.add_argument("cid", help="the dataset's root CID (or its first characters), or a block's")
    dg.add_argument(
        "-o", "--output", type=Path, required=True, metavar="PATH", help="where to write it"
    )
    _add_client_options(dg)
    dl = dsub.add_parser("ls", help="list datasets")
    _add_wide_option(dl)
    dl.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(dl)
    ds = dsub.add_parser("status", help="providers and replica count per block")
    _add_wide_option(ds)
    ds.add_argument("cid", help="the dataset's root CID, or its first characters")
    ds.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(ds)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job_id", help="the job's id, or its first characters (as `jobs` shows)")
    _add_client_options(p)

    p = sub.add_parser("testnet", help="anvil, the contracts, a coordinator and nodes on loopback")
    tsub = p.add_subparsers(dest="testnet_command", required=True, metavar="ACTION")
    tu = tsub.add_parser("up", help="start a testnet in the background")
    tu.add_argument("--nodes", type=int, default=2, metavar="N", help="nodes to start")
    tu.add_argument(
        "--dir", type=Path, default=Path("testnet"), metavar="DIR", help="state, data and logs"
    )
    tu.add_argument(
        "--block-time", type=float, default=1.0, metavar="S", help="anvil's seconds per block"
    )
    _add_cache_option(tu)
    td = tsub.add_parser("down", help="stop the testnet started in --dir")
    td.add_argument(
        "--dir", type=Path, default=Path("testnet"), metavar="DIR", help="the testnet's --dir"
    )

    p = sub.add_parser(
        "demo", help="a coordinator and nodes on loopback embed, search and question a book"
    )
    p.add_argument("--nodes", type=int, default=2, metavar="N", help="nodes to start")
    p.add_argument(
        "--text", type=Path, metavar="FILE", help="default: the shipped Book of Genesis (KJV)"
    )
    p.add_argument("--query", help="question to answer by retrieval")
    p.add_argument("--question", help="question to answer by map-reduce with the LLM")
    p.add_argument("--workdir", type=Path, help="keep data and logs here (default: a temp dir)")
    _add_cache_option(p)

    p = sub.add_parser("tls", help="certificates for a coordinator off loopback")
    tlsub = p.add_subparsers(dest="tls_command", required=True, metavar="ACTION")
    ti = tlsub.add_parser(
        "init", help="make a CA and a certificate for the coordinator's host names (once)"
    )
    ti.add_argument("--dir", type=Path, required=True, metavar="DIR", help="where to write them")
    ti.add_argument(
        "--host",
        action="append",
        required=True,
        metavar="NAME",
        help="a name or address clients dial the coordinator by (repeat for several)",
    )

    p = sub.add_parser(
        "doctor",
        help="check what a node needs: Python, ONNX Runtime and GPUs, models, disk, "
        "the coordinator",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("node-data"),
        metavar="DIR",
        help="the node's data dir (its disk is checked)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_client_options(p)
    _add_cache_option(p)

    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument(
        "shell",
        choices=("bash", "zsh", "tcsh"),
        help="e.g. `tokenweave completion bash > ~/.local/share/bash-completion/completions/"
        "tokenweave`",
    )
    return parser
