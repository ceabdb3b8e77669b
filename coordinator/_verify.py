"""Redundant execution: which shards run twice, and which of several results is right.

A chosen fraction of shards runs on two nodes. Their outputs agree when every window's two
embeddings have cosine similarity of at least `tolerance` (0.9999 accepts the differences between
honest CPU and GPU runs; a perturbed output falls far below). When two results disagree a third
node runs the shard and decides: the result that another one agrees with wins, and every result
that disagrees with it is a node caught returning wrong outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DEFAULT_TOLERANCE = 0.9999


def chosen_for_verification(shard_id: str, fraction: float) -> bool:
    """Whether `shard_id` runs twice: a hash of the id below `fraction` (reproducible, and a node
    cannot tell from the assignment)."""
    if fraction <= 0:
        return False
    value = int.from_bytes(hashlib.sha256(shard_id.encode()).digest()[:8], "big") / 2**64
    return value < fraction


Matrix = npt.NDArray[np.float32]


def window_cosines(a: Matrix, b: Matrix) -> npt.NDArray[np.float64]:
    """Cosine similarity of each row of `a` with the same row of `b`."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cosines: npt.NDArray[np.float64] = np.einsum("ij,ij->i", a64, b64)
    return cosines / np.where(norms == 0, 1.0, norms)


def agree(a: Matrix, b: Matrix, tolerance: float = DEFAULT_TOLERANCE) -> tuple[bool, float]:
    """Whether two outputs of one shard agree, and their lowest per-window cosine."""
    if a.shape != b.shape:
        return False, -1.0
    worst = float(window_cosines(a, b).min()) if len(a) else 1.0
    return worst >= tolerance, worst


@dataclass(frozen=True, slots=True)
class Verdict:
    #: The node whose result is kept (the first to return a result that another agrees with).
    winner: str
    agreed: tuple[str, ...]
    #: Nodes whose results disagree with the winner's, each with its lowest cosine to it.
    caught: tuple[tuple[str, float], ...]


def judge(
    results: Mapping[str, Matrix],
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verdict | None:
    """The verdict over results in arrival order, or None while no two agree."""
    for node, mine in results.items():
        scores = {
            other: agree(mine, theirs, tolerance)
            for other, theirs in results.items()
            if other != node
        }
        agreeing = [other for other, (ok, _) in scores.items() if ok]
        if agreeing:
            caught = tuple((other, worst) for other, (ok, worst) in scores.items() if not ok)
            return Verdict(node, (node, *agreeing), caught)
    return None
