"""A workload of the tests' own, loaded as a plugin (TOKENWEAVE_PLUGINS) by the coordinator and
the nodes: each document's tokens, counted by the model's tokenizer on a node.

It is the whole of what a new kind of work needs: one module, one `register` call, and not a
line of engine code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from tokenweave import tensors, workloads
from tokenweave.errors import InvalidArgumentError
from tokenweave.workloads import (
    DocumentInput,
    DocumentPlan,
    JobPlan,
    NodeRuntime,
    PlanContext,
    TaskPlan,
    TaskRun,
    Workload,
)

#: Seconds each run sleeps first (a test's way to make every run a straggler).
DELAY_ENV = "TOKENWEAVE_TEST_COUNT_DELAY_S"


class CountWorkload(Workload):
    name = "count"

    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        if options:
            raise InvalidArgumentError(f"count takes no options, got {sorted(options)}")
        tasks = tuple(
            TaskPlan(
                cost=len(d.text.encode()) // 4 + 1,
                payload=d.text.encode(),
                detail=json.dumps({"document": i}).encode(),
            )
            for i, d in enumerate(documents)
        )
        planned = tuple(DocumentPlan(d.name, 0) for d in documents)
        return JobPlan(options={}, documents=planned, tasks=tasks, items=len(tasks))

    def run(self, model: str, model_sha256: str, payload: bytes, runtime: NodeRuntime) -> TaskRun:
        time.sleep(float(os.environ.get(DELAY_ENV, "0")))  # a slow node, for backups
        tokenizer = runtime.model(model, model_sha256).tokenizer
        count = len(tokenizer.encode(payload.decode(), add_special_tokens=False).ids)
        return TaskRun(tensors.pack({"tokens": np.array(count, dtype=np.int64)}), count)

    def check(self, detail: bytes, output: bytes) -> None:
        count = tensors.unpack(output).get("tokens")
        if count is None or count.shape != () or count.dtype != np.int64 or int(count) < 0:
            raise InvalidArgumentError("output must be one non-negative int64 named 'tokens'")

    def compare(self, detail: bytes, a: bytes, b: bytes) -> float:
        return 1.0 if int(tensors.unpack(a)["tokens"]) == int(tensors.unpack(b)["tokens"]) else 0.0

    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        counts = {json.loads(detail)["document"]: tensors.unpack(out) for detail, out in tasks}
        return [counts[i] for i in range(len(documents))]


workloads.register(CountWorkload())
