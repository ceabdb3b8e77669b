"""Text generation on the network: SmolLM2 on real node processes, through the SDK and the CLI."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from tokenweave.cli import LocalCluster
from tokenweave.client import Answer, JobStatus, Source
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.models import PreparedGenerator
from tokenweave.v1 import inference_pb2, inference_pb2_grpc

from .conftest import NODE_ARGS, ClusterFactory

GENERATOR = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory, generator: PreparedGenerator) -> LocalCluster:
    """Two nodes that embed and generate; every generation runs on both and their tokens are
    compared; the OpenAI API is served over HTTP."""
    return module_cluster_factory(
        nodes=2,
        coordinator_args=(
            "--models", f"all-minilm-l6-v2,{GENERATOR}",
            "--http-listen", "127.0.0.1:0",
            "--verify-fraction", "1",  # 0.9999 of agreement: the same tokens, for < 10k
        ),
        node_args=(*NODE_ARGS, "--models", f"all-minilm-l6-v2,{GENERATOR}"),
    )  # fmt: skip


def test_a_chat_reply_is_generated_verified_and_metered(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        job = client.chat(QUESTION, max_tokens=12)
        reply = job.completion()
        info = job.refresh()
    assert reply.text.startswith("The capital of France is Paris")
    assert reply.finish_reason in ("stop", "length")
    assert 0 < reply.completion_tokens <= 12
    assert reply.prompt_tokens == 37  # the model's chat template with its default system turn
    assert info.status is JobStatus.SUCCEEDED
    assert info.workload == "generate"
    assert info.options["max_tokens"] == "12"
    assert len(info.nodes) == 1, "one node is credited with the shard"
    ran = [node for node in cluster.nodes if "(generate)" in node.log_path.read_text()]
    assert len(ran) == 2, "both nodes ran it: one generated, the other re-scored its tokens"
    logs = "".join(node.log_path.read_text() for node in cluster.nodes)
    assert "re-scored a claim of" in logs
    assert "tokens: replaced" not in logs, "no honest claim is refused"


def test_a_reply_streams_as_the_node_generates_it(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        job = client.chat(QUESTION, max_tokens=16)
        pieces = list(job.stream())
        reply = job.completion()
    assert len(pieces) > 3, "token by token, not at the end"
    assert "".join(pieces) == reply.text


def test_prompts_sampling_and_stops(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        sampled = [
            client.generate("Once upon a time", max_tokens=8, temperature=0.8, seed=s)
            for s in (1, 1, 2)
        ]
        texts = [job.completion().text for job in sampled]
        stopped = client.chat(QUESTION, max_tokens=16, stop=["Paris"]).completion()
    assert texts[0] == texts[1], "one seed, one text (on whichever node)"
    assert stopped.finish_reason == "stop"
    assert stopped.text == "The capital of France is "


def test_bad_generation_requests_are_refused(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        with pytest.raises(InvalidArgumentError, match="context of 8192 tokens"):
            client.generate("word " * 8000, max_tokens=500)
        with pytest.raises(InvalidArgumentError, match="top_p"):
            client.chat(QUESTION, top_p=1.5)
        with pytest.raises(InvalidArgumentError, match="generates text; embed needs"):
            client.embed(["hello"], model=GENERATOR)
        with pytest.raises(NotFoundError, match="unknown model 'gpt-17'"):
            client.chat(QUESTION, model="gpt-17")


def cli(
    cluster: LocalCluster, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`tokenweave ARGS…` as a user runs it against the cluster."""
    return subprocess.run(
        [sys.executable, "-m", "tokenweave.cli", *args, "--coordinator", cluster.address],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **cluster.client_env()},
        check=False,
    )


def test_the_chat_command(cluster: LocalCluster) -> None:
    shown = cli(cluster, "chat", "What is the capital of France?", "--max-tokens", "10")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("The capital of France is Paris")
    out = cli(cluster, "chat", "What is the capital of France?", "--max-tokens", "10", "--json")
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["text"].startswith("The capital of France is Paris")
    assert reply["completion_tokens"] <= 10


@pytest.fixture(scope="module")
def openai_client(cluster: LocalCluster) -> Iterator[openai.OpenAI]:
    """The real OpenAI SDK, pointed at the coordinator (trusting the cluster's CA)."""
    assert cluster.http_url is not None
    assert cluster.ca is not None
    http = httpx.Client(verify=ssl.create_default_context(cafile=str(cluster.ca)))
    with openai.OpenAI(
        base_url=f"{cluster.http_url}/v1", api_key=cluster.api_key, http_client=http, max_retries=0
    ) as client:
        yield client


def test_the_openai_sdk_chats_completes_embeds_and_lists(openai_client: openai.OpenAI) -> None:
    reply = openai_client.chat.completions.create(
        model=GENERATOR,
        messages=QUESTION,
        max_tokens=12,  # type: ignore[arg-type]
    )
    assert reply.choices[0].message.content.startswith("The capital of France is Paris")  # type: ignore[union-attr]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 37
    streamed = openai_client.chat.completions.create(
        model=GENERATOR,
        messages=QUESTION,
        max_tokens=12,
        stream=True,  # type: ignore[arg-type]
    )
    pieces = [c.choices[0].delta.content for c in streamed if c.choices]
    assert "".join(p or "" for p in pieces) == reply.choices[0].message.content
    assert len([p for p in pieces if p]) > 3, "the reply streams as it is generated"
    completion = openai_client.completions.create(
        model=GENERATOR, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].text.strip().startswith("4")
    chunks = list(
        openai_client.completions.create(
            model=GENERATOR, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4, stream=True
        )
    )
    texts = ["", ""]
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.text
    assert texts == [c.text for c in completion.choices]
    assert chunks[-1].usage is not None
    vectors = openai_client.embeddings.create(model="all-minilm-l6-v2", input=["hi", "there"])
    assert [len(v.embedding) for v in vectors.data] == [384, 384]
    assert {m.id for m in openai_client.models.list()} == {"all-minilm-l6-v2", GENERATOR}


def test_openai_errors_have_openais_shape(
    cluster: LocalCluster, openai_client: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match="context of 8192"):
        openai_client.completions.create(model=GENERATOR, prompt="word " * 8000, max_tokens=500)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        openai_client.chat.completions.create(
            model=GENERATOR,
            messages=QUESTION,
            temperature=-1,  # type: ignore[arg-type]
        )
    with pytest.raises(openai.NotFoundError, match="unknown model 'gpt-17'"):
        openai_client.chat.completions.create(model="gpt-17", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="embeds text"):
        openai_client.completions.create(model="all-minilm-l6-v2", prompt="hi")
    stranger = openai_client.with_options(api_key="tw_000000000000_nope")
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    assert cluster.http_url is not None
    assert cluster.ca is not None
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cluster.ca))) as http:
        headers = {"Authorization": f"Bearer {cluster.api_key}"}
        url = f"{cluster.http_url}/v1/chat/completions"
        for body, status in (
            (b"{not json", 400),
            (json.dumps({"model": GENERATOR, "messages": "hi"}).encode(), 400),
            (json.dumps({"model": GENERATOR, "messages": QUESTION, "n": 2}).encode(), 400),
            (b"x" * (65 * 1024 * 1024), 413),
        ):
            response = http.post(url, content=body, headers=headers)
            assert response.status_code == status, response.text
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert http.get(f"{cluster.http_url}/openapi.json").json()["info"]["title"] == "tokenweave"


FILLER = [
    "The harbour town sold smoked fish, rope and tar to the ships that came in each spring.",
    "Farmers in the valley grew barley and kept goats on the terraces above the river.",
    "The old mill by the bridge ground flour for three villages until the flood of 1821.",
    "Children walked two hours to the school house, which had one stove and forty desks.",
]
FACT = "The keeper of the lighthouse on the northern cape was a woman named Ingrid Solberg."


def local_ask(generator: PreparedGenerator, text: str, options: dict[str, str]) -> Answer:
    """The same map-reduce run in this process, stage by stage, with no network."""
    from tokenweave import tensors, workloads
    from tokenweave.models import Generator
    from tokenweave.workloads import DocumentInput, PlanContext

    loaded = Generator(generator, threads=2)

    class Runtime:
        def generator(self, name: str, sha256: str) -> Generator:
            return loaded

        def report(self, output: bytes) -> None:
            pass

        def cancelled(self) -> bool:
            return False

    ask = workloads.get("ask")
    context = PlanContext(
        generator.spec, loaded.sha256, loaded.tokenizer, 1, {}, generator.chat_template
    )
    plan = ask.plan(GENERATOR, [DocumentInput("doc", text)], options, context)
    done: list[tuple[bytes, bytes]] = []
    stage = plan.tasks
    while stage:
        for task in stage:
            run = ask.run(GENERATOR, loaded.sha256, task.payload, Runtime())  # type: ignore[arg-type]
            done.append((task.detail, run.output))
        stage = ask.next_stage(plan.documents, done, context)
    [result] = ask.merge(plan.documents, done)
    spans = tensors.from_bytes(tensors.to_bytes(result["spans"], "int64"), "int64")
    return Answer(bytes(result["answer"]).decode(), bytes(result["finish_reason"]).decode(),
                  tuple(Source(0, "doc", int(a), int(b)) for a, b in spans.reshape(-1, 2)),
                  None)  # type: ignore[arg-type]  # fmt: skip


def test_ask_maps_windows_over_nodes_and_reduces_to_the_local_answer(
    cluster: LocalCluster, generator: PreparedGenerator, tmp_path: Path
) -> None:
    """`tokenweave submit ask` over a text three windows long: every window is a map task,
    the notes are reduced to one answer, and the answer and its spans are those of the same
    map-reduce run in one process (greedy, so exactly)."""
    paragraphs = [FILLER[i % 4] for i in range(12)]
    paragraphs.insert(8, FACT)
    text = "\n\n".join(paragraphs)
    (tmp_path / "doc").write_text(text)
    options = {"window": "128", "overlap": "8", "note_tokens": "24", "max_tokens": "24"}
    question = "Who kept the lighthouse on the northern cape?"
    out = cli(
        cluster, "submit", "ask", str(tmp_path / "doc"), "--question", question,
        "--window", "128", "--overlap", "8", "--note-tokens", "24", "--max-tokens", "24", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    expected = local_ask(generator, text, {"question": question, **options})
    with cluster.client() as client:
        info = client.job(answer["job"]).refresh()
        with pytest.raises(InvalidArgumentError, match="needs a question"):
            client.ask([text], "  ")
    assert info.workload == "ask"
    assert info.windows >= 3
    if answer["finish_reason"] != "unanswered":  # a 135M model's notes may all be dropped
        assert info.shards_total > info.windows, "a reduce stage ran after the map"
    assert answer["finish_reason"] == expected.finish_reason
    assert answer["answer"] == expected.text
    assert [(s["start"], s["end"]) for s in answer["sources"]] == [
        (s.start, s.end) for s in expected.sources
    ]
    for source in answer["sources"]:
        assert 0 <= source["start"] < source["end"] <= len(text)
        assert source["name"] == "doc"


def test_the_open_inference_protocol_generates_text(cluster: LocalCluster) -> None:
    """SmolLM2 through ModelInfer (BYTES text_input → text_output, Triton's names for an LLM):
    the same greedy text as the SDK's generation; bad parameters are refused."""
    assert cluster.ca is not None
    credentials = grpc.ssl_channel_credentials(cluster.ca.read_bytes())
    key = [("authorization", f"Bearer {cluster.api_key}")]
    with grpc.secure_channel(cluster.address, credentials) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = inference_pb2.ModelInferRequest(model_name=GENERATOR, id="g-1")
        request.inputs.add(name="text_input", datatype="BYTES", shape=[1])
        request.inputs[0].contents.bytes_contents.append(b"Once upon a time")
        request.parameters["max_tokens"].int64_param = 8
        reply = stub.ModelInfer(request, metadata=key)
        request.parameters["beam_width"].int64_param = 4
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, metadata=key)
    [output] = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("text_output", "BYTES", [1])
    raw = reply.raw_output_contents[0]
    text = raw[4 : 4 + int.from_bytes(raw[:4], "little")].decode()
    with cluster.client() as client:
        expected = client.generate("Once upon a time", max_tokens=8).completion()
    assert text == expected.text
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "parameter 'beam_width'" in str(refused.value.details())


def test_a_node_lost_mid_generation_is_carried_on_by_the_other(cluster: LocalCluster) -> None:
    """Last in this module (it kills one of its nodes): the node streaming a reply is killed
    after a few tokens; the other node carries the task on from the tokens already streamed, and
    the client's stream reads as one generation, with no token missing or repeated."""
    seen = {node.name: len(node.log_path.read_text()) for node in cluster.nodes}
    ids = {n.log_path.read_text().rsplit(" as ", 1)[1].split()[0]: n for n in cluster.nodes}
    prompt = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]
    with cluster.client() as client:
        job = client.chat(prompt, max_tokens=200)
        stream = job.stream()
        pieces = [next(stream) for _ in range(3)]
        [lost] = [ids[n.node_id] for n in client.nodes() if n.shards_running and n.online]
        lost.kill()
        pieces += list(stream)
        reply = job.completion()
    [survivor] = [node for node in cluster.nodes if node is not lost]
    log = survivor.log_path.read_text()[seen[survivor.name] :]
    assert "carried on a lost run from the" in log
    assert "they pass" in log
    assert "".join(pieces) == reply.text, "nothing missing or repeated"
    assert len(reply.text) > len("".join(pieces[:3])) + 100, "the survivor streamed on"
