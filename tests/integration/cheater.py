"""A dishonest node for the tests: the real daemon and protocol, with perturbed outputs.

    python -m tests.integration.cheater --coordinator HOST:PORT --data-dir DIR [node flags]

Each window's embedding is rotated a little toward noise and re-normalised, and the digest is
recomputed, so every check a single result can pass, it passes: only a comparison with another
node's output can catch it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tokenweave.cli import main
from tokenweave.node import ShardRun, ShardRunner

_honest_run = ShardRunner.run


def _perturbed(self: ShardRunner, windows: Sequence[npt.NDArray[np.int64]]) -> ShardRun:
    run = _honest_run(self, windows)
    matrix = np.frombuffer(run.embeddings, dtype="<f4").reshape(run.rows, run.dim).copy()
    noise = np.random.default_rng(len(windows)).normal(size=matrix.shape).astype("<f4")
    matrix += 0.2 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    data = matrix.astype("<f4").tobytes()
    return dataclasses.replace(run, embeddings=data, digest=hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    ShardRunner.run = _perturbed  # type: ignore[method-assign]
    sys.exit(main(["node", *sys.argv[1:]]))
