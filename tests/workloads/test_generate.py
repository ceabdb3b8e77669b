"""The generation workload: planning prompts, running them on a real decoder, judging outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from tokenweave import tensors
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError
from tokenweave.models import ALL_MINILM_L6_V2, Generator, PreparedGenerator
from tokenweave.v1 import generate_pb2
from tokenweave.workloads import DocumentInput, DocumentSource, PlanContext, get
from tokenweave.workloads._api import DocumentSource as Source

WORKLOAD = get("generate")


@pytest.fixture(scope="module")
def context(generator: PreparedGenerator) -> PlanContext:
    return PlanContext(
        model=generator.spec,
        model_sha256=generator.decoder()[1],
        tokenizer=Tokenizer.from_file(str(generator.tokenizer_path)),
        items_per_task=1,
        defaults={},
        chat_template=generator.chat_template,
    )


@pytest.fixture(scope="module")
def loaded(generator: PreparedGenerator) -> Generator:
    return Generator(generator, threads=2)


class _Runtime:
    def __init__(self, generator: Generator) -> None:
        self._generator = generator
        self.parts: list[generate_pb2.GenerateOutput] = []

        self.cancel_after: int | None = None

    def report(self, output: bytes) -> None:
        self.parts.append(generate_pb2.GenerateOutput.FromString(output))

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.parts) >= self.cancel_after

    def generator(self, name: str, sha256: str) -> Generator:
        if sha256 != self._generator.sha256:
            raise FailedPreconditionError(f"refusing model {name} sha256 {sha256}")
        return self._generator

    def model(self, name: str, sha256: str) -> object:
        raise AssertionError("generation needs no embedding model")

    def read_document(self, source: DocumentSource, label: str) -> str:
        raise AssertionError("generation reads no dataset")


def _chat(text: str) -> str:
    return json.dumps([{"role": "user", "content": text}])


def test_a_chat_job_plans_one_task_per_prompt_and_runs_it(
    context: PlanContext, loaded: Generator
) -> None:
    docs = [
        DocumentInput("q", _chat("What is the capital of France?")),
        DocumentInput("", _chat("Hi")),
    ]
    plan = WORKLOAD.plan("m", docs, {"format": "chat", "max_tokens": "8"}, context)
    assert len(plan.tasks) == 2
    assert plan.options["max_tokens"] == "8"
    assert plan.options["temperature"] == "0.0"
    task = generate_pb2.GenerateTask.FromString(plan.tasks[0].payload)
    prompt = tensors.from_bytes(task.prompt_ids, "uint32").tolist()
    assert context.tokenizer.decode(prompt, skip_special_tokens=False).endswith(
        "<|im_start|>assistant\n"
    )
    assert plan.tasks[0].cost == len(prompt) + 8
    runtime = _Runtime(loaded)
    run = WORKLOAD.run("m", context.model_sha256, plan.tasks[0].payload, runtime)
    WORKLOAD.check(plan.tasks[0].detail, run.output)
    final = generate_pb2.GenerateOutput.FromString(run.output)
    assert len(runtime.parts) > 1, "the tokens were reported as they came"
    assert "".join(p.text for p in runtime.parts) == final.text
    streamed = b"".join(p.token_ids for p in runtime.parts)
    assert final.token_ids.startswith(streamed)
    assert WORKLOAD.compare(plan.tasks[0].detail, run.output, run.output) == 1.0
    [result] = WORKLOAD.merge(plan.documents[:1], [(plan.tasks[0].detail, run.output)])
    assert bytes(result["text"]).decode().startswith("The capital of France is Paris")
    usage = WORKLOAD.meter(plan.tasks[0].cost, plan.tasks[0].detail, run.output)
    assert (usage.input_tokens, usage.output_tokens) == (len(prompt), len(result["token_ids"]))
    with pytest.raises(FailedPreconditionError, match="refusing"):
        WORKLOAD.run("m", "0" * 64, plan.tasks[0].payload, _Runtime(loaded))


def test_a_generation_taken_back_stops_within_a_token(
    context: PlanContext, loaded: Generator
) -> None:
    plan = WORKLOAD.plan(
        "m", [DocumentInput("", "Once upon a time")], {"max_tokens": "200"}, context
    )
    runtime = _Runtime(loaded)
    runtime.cancel_after = 3
    with pytest.raises(FailedPreconditionError, match="taken back"):
        WORKLOAD.run("m", context.model_sha256, plan.tasks[0].payload, runtime)
    assert len(runtime.parts) == 3


@pytest.mark.parametrize("options", [{}, {"temperature": "0.8", "seed": "3"}, {"stop": '["sea"]'}])
def test_a_lost_run_is_carried_on_from_what_it_streamed(
    context: PlanContext, loaded: Generator, options: dict[str, str]
) -> None:
    docs = [DocumentInput("", _chat("Write a short poem about the sea."))]
    plan = WORKLOAD.plan("m", docs, {"format": "chat", "max_tokens": "24", **options}, context)
    payload = plan.tasks[0].payload
    whole = generate_pb2.GenerateOutput.FromString(
        WORKLOAD.run("m", context.model_sha256, payload, _Runtime(loaded)).output
    )
    lost = _Runtime(loaded)
    lost.cancel_after = 3  # the node is lost after streaming three parts
    with pytest.raises(FailedPreconditionError):
        WORKLOAD.run("m", context.model_sha256, payload, lost)
    parts = [p.SerializeToString() for p in lost.parts]
    resumed = WORKLOAD.resume(payload, parts)
    assert generate_pb2.GenerateTask.FromString(resumed).prefix_ids
    carried = _Runtime(loaded)
    run = WORKLOAD.run("m", context.model_sha256, resumed, carried)
    result = generate_pb2.GenerateOutput.FromString(run.output)
    if "temperature" not in options:
        assert result == whole, "greedy: the same generation as a run that was not lost"
    else:  # the same draws, though a draw within 1e-6 of a token's edge may fall either side
        claim = generate_pb2.GenerateTask.FromString(payload)
        claim.claim.CopyFrom(result)
        check = WORKLOAD.run("m", context.model_sha256, claim.SerializeToString(), _Runtime(loaded))
        assert check.output == run.output, "a verifier accepts the carried-on generation"
    streamed = [*lost.parts, *carried.parts]
    assert len(carried.parts) > 0, "the new run streams on"
    assert result.text.startswith("".join(p.text for p in streamed))
    tokens = b"".join(p.token_ids for p in streamed)
    assert result.token_ids.startswith(tokens), "no token missing or repeated"
    assert WORKLOAD.resume(payload, [*parts, b"\xff not a part"]) == payload, "a liar's parts"
    too_many = generate_pb2.GenerateOutput(token_ids=bytes(4 * 25)).SerializeToString()
    assert WORKLOAD.resume(payload, [too_many]) == payload, "more tokens than max_tokens"


def test_stop_texts_end_the_generation_and_are_cut(context: PlanContext, loaded: Generator) -> None:
    docs = [DocumentInput("q", _chat("What is the capital of France?"))]
    options = {"format": "chat", "max_tokens": "16", "stop": json.dumps(["Paris"])}
    plan = WORKLOAD.plan("m", docs, options, context)
    runtime = _Runtime(loaded)
    run = WORKLOAD.run("m", context.model_sha256, plan.tasks[0].payload, runtime)
    output = generate_pb2.GenerateOutput.FromString(run.output)
    assert output.finish_reason == "stop"
    assert output.text == "The capital of France is "
    streamed = "".join(p.text for p in runtime.parts)
    assert output.text.startswith(streamed), "no part of the stop text was streamed"


@pytest.mark.parametrize(
    ("options", "docs", "message"),
    [
        ({"max_tokens": "0"}, None, "max_tokens=0 must be between 1 and 8191"),
        ({"max_tokens": "lots"}, None, "max_tokens='lots' is not an integer"),
        ({"temperature": "-1"}, None, "temperature=-1.0 must be 0 or more"),
        ({"temperature": "nan"}, None, "temperature='nan' is not a finite number"),
        ({"top_p": "0"}, None, "top_p=0.0 must be in"),
        ({"stop": "[1]"}, None, "stop must be a JSON list of non-empty texts"),
        ({"stop": json.dumps(["x"] * 5)}, None, "stop takes at most 4"),
        ({"window": "8"}, None, "unknown option(s) 'window' for generate"),
        ({"format": "xml"}, None, "format='xml'"),
        ({"format": "chat"}, [DocumentInput("c", "not json")], "prompt 0 ('c') is not a JSON"),
        (
            {"format": "chat"},
            [DocumentInput("c", '[{"role": "robot", "content": "x"}]')],
            "role 'robot'",
        ),
        ({"max_tokens": "8000"}, [DocumentInput("", "word " * 400)], "context of 8192 tokens"),
        ({}, [DocumentInput("", "x" * 2_000_000)], "more than the model's context"),
        (
            {},
            [DocumentInput("d", "x", Source("bafy", 0, 1))],
            "generate takes prompts, not a dataset",
        ),
    ],
)
def test_bad_options_and_prompts_name_what_is_wrong(
    context: PlanContext,
    options: dict[str, str],
    docs: list[DocumentInput] | None,
    message: str,
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        WORKLOAD.plan("m", docs or [DocumentInput("", "hello")], options, context)
    assert message in info.value.message


def test_an_embedding_model_does_not_generate(context: PlanContext) -> None:
    embedder = PlanContext(ALL_MINILM_L6_V2, "sha", context.tokenizer, 1, {})
    with pytest.raises(InvalidArgumentError, match="does not generate text"):
        WORKLOAD.plan("all-minilm-l6-v2", [DocumentInput("", "hi")], {}, embedder)


def _output(ids: list[int], finish: str = "length", text: str = "t") -> bytes:
    return generate_pb2.GenerateOutput(
        token_ids=tensors.to_bytes(np.asarray(ids, np.uint32), "uint32"),
        finish_reason=finish,
        text=text,
    ).SerializeToString()


def test_checks_and_comparisons_of_outputs() -> None:
    detail = json.dumps({"prompt_tokens": 3, "max_tokens": 4, "vocab": 100}).encode()
    WORKLOAD.check(detail, _output([1, 2, 3, 4]))
    for bad, why in (
        (_output([1, 2, 3, 4, 5]), "5 tokens generated"),
        (_output([1, 200, 3, 4]), "token id 200"),
        (_output([1], "tired"), "finish_reason 'tired'"),
        (_output([1], "length"), "length before max_tokens"),
        (b"\xff\xff", "not a GenerateOutput"),
    ):
        with pytest.raises(InvalidArgumentError, match=why):
            WORKLOAD.check(detail, bad)
    assert WORKLOAD.compare(detail, _output([1, 2, 3, 4]), _output([1, 2, 9, 9])) == 0.5
    assert WORKLOAD.compare(detail, _output([1, 2], "stop"), _output([1, 2, 3, 4])) == 0.5
    assert WORKLOAD.compare(detail, _output([1], "stop", "a"), _output([1], "stop", "b")) == -1.0
