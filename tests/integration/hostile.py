"""Hostile nodes for the attack tests: the real daemon and protocol, misbehaving one way.

    python -m tests.integration.hostile --coordinator HOST:PORT --data-dir DIR [...] --hostile B

(`cluster.add_node("--hostile", B, module="tests.integration.hostile")`), where B is one of:

* `failing`: claims a speed far beyond any machine's at calibration and reports every shard
  failed (a sybil whose failures used to cost nothing and fail the job).
* `churner`: takes work and hangs up the moment it arrives, then registers again at once (no
  backoff), for ever.
* `random`: answers every shard with random unit vectors of the right shape (a digest and a
  token digest that pass every check a single result can).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tokenweave.cli import main
from tokenweave.node import ShardRunner
from tokenweave.node._reconnect import Backoff
from tokenweave.node._session import SessionLostError
from tokenweave.node._worker import ShardQueue
from tokenweave.v1 import nodes_pb2


def _fail(self: ShardRunner, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
    raise RuntimeError("this node fails every shard")


def _boast(self: ShardRunner, windows: int = 16, repeats: int = 2) -> float:
    return 9e9


def _hang_up(self: ShardQueue, assignment: nodes_pb2.ShardAssignment) -> None:
    raise SessionLostError("hanging up on purpose")


def _no_wait(self: Backoff) -> float:
    return 0.0


def _random(self: ShardRunner, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
    matrix = np.random.default_rng().normal(size=(len(windows), 384)).astype("<f4")
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


BEHAVIOURS = {
    "failing": ((ShardRunner, "embed", _fail), (ShardRunner, "calibrate", _boast)),
    "churner": ((ShardQueue, "assign", _hang_up), (Backoff, "next_wait", _no_wait)),
    "random": ((ShardRunner, "embed", _random),),
}


if __name__ == "__main__":
    args = sys.argv[1:]
    at = args.index("--hostile")
    behaviour = args[at + 1]
    del args[at : at + 2]
    for owner, name, replacement in BEHAVIOURS[behaviour]:
        setattr(owner, name, replacement)
    sys.exit(main(["node", *args]))
