"""A dishonest node for the tests: the real daemon and protocol, with perturbed outputs.

    python -m tests.integration.cheater --coordinator HOST:PORT --data-dir DIR [node flags]

Each window's embedding is rotated a little toward noise and re-normalised before the embedding
workload packs it (the digest is computed over the perturbed output), so every check a single
result can pass, it passes: only a comparison with another
node's output can catch it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tokenweave.cli import main
from tokenweave.node import ShardRunner

_honest_embed = ShardRunner.embed


def _perturbed(
    self: ShardRunner, windows: Sequence[npt.NDArray[np.int64]]
) -> npt.NDArray[np.float32]:
    matrix = _honest_embed(self, windows).copy()
    noise = np.random.default_rng(len(windows)).normal(size=matrix.shape).astype("<f4")
    matrix += 0.2 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


if __name__ == "__main__":
    ShardRunner.embed = _perturbed  # type: ignore[method-assign]
    sys.exit(main(["node", *sys.argv[1:]]))
