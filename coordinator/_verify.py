"""Redundant execution: which shards run twice, and which of several results is right.

A fraction of shards, chosen with a secret, runs on two nodes (and every shard of a node not yet
vetted). The second run is the task again, or — for a workload that checks results
(`verifies_results`, e.g. generation: one teacher-forced pass over the claimed tokens instead of
generating them) — the workload's `verification` of the first result, placed once that result
is in; either way its output is the task's right output. Two outputs agree when their workload's
similarity
reaches `tolerance` (for embeddings, the lowest per-window cosine: 0.9999 accepts the differences
between honest CPU and GPU runs, a perturbed output falls far below). When two results disagree a
third node runs the shard and decides: the result that another one agrees with wins, and every
result that disagrees with it is a node caught returning wrong outputs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tokenweave import workloads
from tokenweave.coordinator._views import QueuedShard, ShardOutput
from tokenweave.errors import InvalidArgumentError, clip

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.9999

#: Similarity of two outputs of one shard, in [-1, 1] (the workload's `compare`).
Similarity = Callable[[bytes, bytes], float]


def check_output(shard: QueuedShard, output: ShardOutput) -> None:
    """InvalidArgumentError unless the output is the shard's, whole and well-formed (its digest,
    then its workload's check). Whatever the check raises refuses the output: a node's bytes
    must never take the dispatcher down."""
    if hashlib.sha256(output.output).hexdigest() != output.digest:
        raise InvalidArgumentError(f"shard {shard.shard_id}: digest does not match the output")
    try:
        workloads.get(shard.workload).check(shard.detail, output.output)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"shard {shard.shard_id}: {exc.message}") from None
    except Exception as exc:
        logger.exception("the %s check of shard %s raised", shard.workload, shard.shard_id)
        raise InvalidArgumentError(
            f"shard {shard.shard_id}: output refused ({type(exc).__name__}: {clip(exc, 200)})"
        ) from None


def similarity(shard: QueuedShard) -> Similarity:
    """The shard's workload comparison; two outputs it cannot compare do not agree."""
    workload = workloads.get(shard.workload)

    def compare(a: bytes, b: bytes) -> float:
        try:
            return workload.compare(shard.detail, a, b)
        except Exception:
            logger.exception("the %s comparison of shard %s raised", workload.name, shard.shard_id)
            return -1.0

    return compare


def judging(shard: QueuedShard, default: float) -> tuple[Similarity, float]:
    """How the shard's outputs are compared, and the similarity they must reach to agree: its
    workload's tolerance for the task, or the coordinator's (`default`)."""
    own = workloads.get(shard.workload).tolerance(shard.detail)
    return similarity(shard), default if own is None else own


def verification_payload(shard: QueuedShard, payload: bytes, claim: bytes) -> bytes:
    """What a verifier of `claim` (a checked output of the shard) runs: the workload's
    verification task, or the task itself if the workload cannot build one."""
    try:
        return workloads.get(shard.workload).verification(payload, claim)
    except Exception:
        logger.exception("the %s verification of shard %s raised", shard.workload, shard.shard_id)
        return payload


def chosen_for_verification(shard_id: str, fraction: float, secret: bytes) -> bool:
    """Whether `shard_id` runs twice: a keyed hash of the id (HMAC-SHA256 with the coordinator's
    secret) below `fraction`. Nodes do not have the secret, so they cannot tell which of their
    shards will be checked — a public hash of the id would let a cheater answer honestly on
    exactly those."""
    if fraction <= 0:
        return False
    digest = hmac.new(secret, shard_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True, slots=True)
class Verdict:
    #: The node whose result is kept (the first to return a result that another agrees with).
    winner: str
    agreed: tuple[str, ...]
    #: Nodes whose results disagree with the winner's, each with its similarity to it.
    caught: tuple[tuple[str, float], ...]


def judge(
    results: Mapping[str, bytes], similarity: Similarity, tolerance: float = DEFAULT_TOLERANCE
) -> Verdict | None:
    """The verdict over results in arrival order, or None while no two agree."""
    for node, mine in results.items():
        scores = {
            other: similarity(mine, theirs) for other, theirs in results.items() if other != node
        }
        agreeing = [other for other, score in scores.items() if score >= tolerance]
        if agreeing:
            caught = tuple((other, s) for other, s in scores.items() if s < tolerance)
            return Verdict(node, (node, *agreeing), caught)
    return None
