"""Text generation on the network: SmolLM2 on real node processes, through the SDK and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tokenweave.cli import LocalCluster
from tokenweave.client import JobStatus
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.models import PreparedGenerator

from .conftest import NODE_ARGS, ClusterFactory

GENERATOR = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory, generator: PreparedGenerator) -> LocalCluster:
    """Two nodes that generate; every generation runs on both and their tokens are compared."""
    return module_cluster_factory(
        nodes=2,
        coordinator_args=(
            "--models", f"all-minilm-l6-v2,{GENERATOR}",
            "--verify-fraction", "1",
            "--verify-tolerance", "1",
        ),
        node_args=(*NODE_ARGS, "--models", GENERATOR),
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
    assert len(ran) == 2, "both nodes ran it: the verification compared their tokens"


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


def test_the_chat_command(cluster: LocalCluster) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "tokenweave.cli", "chat", "What is the capital of France?",
            "--max-tokens", "10", "--json", "--coordinator", cluster.address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cluster.client_env()},
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["text"].startswith("The capital of France is Paris")
    assert reply["completion_tokens"] <= 10
