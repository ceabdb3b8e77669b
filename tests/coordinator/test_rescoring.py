"""Generation is verified by re-scoring, in the dispatcher with a real SQLite database and the
real decoder: the verifier's copy carries the first result as its claim and is placed once that
result is in; a node that returned other text is caught by it (and the referee), unpaid, and
the job's text is the honest one."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from tests.coordinator.test_dispatch import Parts, _assignments, _node, make_parts
from tokenweave import tensors, workloads
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._db import LedgerRow, NodeRow
from tokenweave.coordinator._placer import WorkPolicy
from tokenweave.coordinator._referee import LocalRunner
from tokenweave.coordinator._views import Assignment, JobRequest, ShardOutput
from tokenweave.models import PreparedGenerator, PreparedModel
from tokenweave.types import JobState
from tokenweave.v1 import generate_pb2
from tokenweave.workloads import DocumentInput

from .test_trust import _rows

__all__ = ["make_parts"]

GENERATOR = "smollm2-135m-instruct"
QUESTION = json.dumps([{"role": "user", "content": "What is the capital of France?"}])


@pytest.fixture
def catalog(
    model_cache: Path, prepared: PreparedModel, generator: PreparedGenerator
) -> ModelCatalog:
    return ModelCatalog.prepare(["all-minilm-l6-v2", GENERATOR], model_cache)


def shard_output(assignment: Assignment, data: bytes) -> ShardOutput:
    return ShardOutput(assignment.shard_id, data, 10, 0.1, hashlib.sha256(data).hexdigest(), "cpu")


def other_text(runner: LocalRunner, catalog: ModelCatalog) -> bytes:
    """Fluent text from the model that answers nothing it was asked."""
    generator = runner.generator(GENERATOR, catalog.get(GENERATOR).sha256)
    ids = generator.encode("Paris is a city in Germany, on the river Thames.")
    return generate_pb2.GenerateOutput(
        token_ids=tensors.to_bytes(np.asarray(ids, np.uint32), "uint32"),
        finish_reason="stop",
        text=generator.decode(ids),
    ).SerializeToString()


async def test_other_text_is_caught_by_re_scoring(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog, model_cache: Path
) -> None:
    runner = LocalRunner(model_cache, model_cache / "registered", threads=2)
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=1.0), referee=runner)
    nodes = [
        await _node(registry, dispatcher, catalog, workloads=("generate",), model=GENERATOR)
        for _ in range(2)
    ]
    job = await dispatcher.submit(
        JobRequest(
            "generate",
            GENERATOR,
            (DocumentInput("q", QUESTION),),
            {"format": "chat", "max_tokens": "12"},
        )
    )
    held = {lane.node_id: _assignments(lane) for lane in nodes}
    liar, honest = sorted(nodes, key=lambda lane: not held[lane.node_id])  # the one that got it
    [first] = held[liar.node_id]
    assert not generate_pb2.GenerateTask.FromString(first.payload).HasField("claim")
    assert not held[honest.node_id], "the verifier waits for a result to check"
    await dispatcher.complete(liar, shard_output(first, other_text(runner, catalog)))
    [check] = _assignments(honest)
    task = generate_pb2.GenerateTask.FromString(check.payload)
    assert task.HasField("claim"), "the verifier re-scores the first result"
    assert task.claim.text.startswith("Paris is a city in Germany")
    verdict = workloads.get("generate").run(GENERATOR, check.model_sha256, check.payload, runner)
    await dispatcher.complete(honest, shard_output(check, verdict.output))
    for _ in range(600):  # two results disagree, no third node: the referee runs it
        if (view := await dispatcher.job(job.job_id)).state.finished:
            break
        await asyncio.sleep(0.1)
    assert view.state is JobState.SUCCEEDED, view.error
    [result] = [r async for r in store.results(job.job_id)]
    assert bytes(result.outputs["text"]).decode().startswith("The capital of France is Paris")
    paid = {r.address for r in await _rows(store, LedgerRow) if not r.withheld}
    assert paid == {honest.node_id}, "the liar is unpaid"
    [liar_row] = [n for n in await _rows(store, NodeRow) if n.node_id == liar.node_id]
    assert liar_row.verifications_failed == 1
