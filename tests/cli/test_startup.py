"""The command starts fast: building its parser, `--help` and `--version` load no heavy library.

Each check runs in a fresh interpreter and reads `sys.modules` (not a clock: machines are noisy).
A command imports what it needs when it runs (tokenweave/cli/_app.py, `_dispatch`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tokenweave.cli import main

#: Top-level packages that cost from tens of milliseconds to seconds to import.
HEAVY = (
    "eth_account",
    "google.protobuf",
    "grpc",
    "libp2p",
    "numpy",
    "onnxruntime",
    "pygments",
    "sqlalchemy",
    "tokenizers",
    "trio",
    "web3",
)

_LOADED = f"""
import json, sys
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def heavy_modules_after(code: str) -> list[str]:
    """The HEAVY packages a fresh interpreter has loaded after running `code`."""
    proc = subprocess.run(
        [sys.executable, "-c", code + _LOADED],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return loaded


def test_building_the_parser_loads_no_heavy_library() -> None:
    code = "from tokenweave.cli._app import build_parser\nbuild_parser()\n"
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["submit", "embed", "--help"],
        ["data", "put", "--help"],
        ["jobs", "--limit", "many"],  # an argument error exits before any work
    ],
)
def test_the_entry_point_answers_without_heavy_libraries(argv: list[str]) -> None:
    code = f"""
from tokenweave.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
"""
    assert heavy_modules_after(code) == []


def test_importing_the_sdk_package_loads_no_heavy_library() -> None:
    code = "import tokenweave, tokenweave.client, tokenweave.storage, tokenweave.contracts\n"
    assert heavy_modules_after(code) == []


def test_the_model_help_names_the_sdk_default(capsys: pytest.CaptureFixture[str]) -> None:
    from tokenweave.client import DEFAULT_MODEL

    with pytest.raises(SystemExit):
        main(["submit", "embed", "--help"])
    assert f"default{DEFAULT_MODEL}" in "".join(capsys.readouterr().out.split())


def test_a_node_daemon_loads_none_of_the_coordinator() -> None:
    """What `tokenweave node` imports before it runs: the node's side only (importing the
    coordinator, and with it web3 and the EVM, once took a node 1.5 s more CPU to start)."""
    code = "import sys, tokenweave.cli._servers, tokenweave.node\n"
    loaded = heavy_modules_after(code + "assert 'tokenweave.coordinator' not in sys.modules\n")
    assert "web3" not in loaded
    assert "eth_account" not in loaded
    assert "onnxruntime" in loaded, "the check sees what the node does load"
