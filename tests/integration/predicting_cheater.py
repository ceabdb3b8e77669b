"""A cheater that predicts which shards are verified: the real daemon, honest only on the shards a
public hash of the shard id would pick for verification (the rule before the coordinator keyed
it with a secret), and forging every other output.

    python -m tests.integration.predicting_cheater --coordinator HOST:PORT --data-dir DIR [...]
"""

from __future__ import annotations

import contextvars
import hashlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.integration.cheater import _perturbed
from tokenweave.cli import main
from tokenweave.node import ShardRunner
from tokenweave.node._worker import ShardWorker
from tokenweave.v1 import nodes_pb2

#: The fraction a public-hash rule would verify (the coordinator's default --verify-fraction).
PREDICTED_FRACTION = 0.1

_shard: contextvars.ContextVar[str] = contextvars.ContextVar("shard", default="")
_honest_embed = ShardRunner.embed
_honest_run = ShardWorker.run


def predicted_checked(shard_id: str) -> bool:
    value = int.from_bytes(hashlib.sha256(shard_id.encode()).digest()[:8], "big") / 2**64
    return value < PREDICTED_FRACTION


async def _remembering(
    self: ShardWorker, assignment: nodes_pb2.ShardAssignment, *rest: Any
) -> nodes_pb2.LeaseRequest:
    _shard.set(assignment.shard_id)  # the run's worker thread inherits the context
    return await _honest_run(self, assignment, *rest)


def _predicting(
    self: ShardRunner, windows: Sequence[npt.NDArray[np.int64]]
) -> npt.NDArray[np.float32]:
    if predicted_checked(_shard.get()):
        return _honest_embed(self, windows)
    return _perturbed(self, windows)


if __name__ == "__main__":
    ShardWorker.run = _remembering  # type: ignore[method-assign]
    ShardRunner.embed = _predicting  # type: ignore[method-assign]
    sys.exit(main(["node", *sys.argv[1:]]))
