"""Jobs over stored datasets: nodes read the documents from blocks, the result matches texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from tokenweave.cli import LocalCluster
from tokenweave.client import EmbedResult
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.storage import CID, RAW
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc

from .conftest import GENESIS, ClusterFactory


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    # One replica per block: each node holds part of every dataset and must fetch the rest.
    return module_cluster_factory(nodes=2, coordinator_args=("--replicas", "1"))


def _texts() -> list[str]:
    genesis = GENESIS.read_text(encoding="utf-8")
    chapter = genesis[: genesis.index("Chapter 3")]  # ~1,500 tokens: several windows
    return [chapter, "Let there be light.", "Ünïcode — «quotes» and 日本語.", chapter[:700]]


def _same(a: EmbedResult, b: EmbedResult) -> None:
    assert len(a.documents) == len(b.documents)
    for x, y in zip(a.documents, b.documents, strict=True):
        assert x.tokens == y.tokens
        np.testing.assert_array_equal(x.spans, y.spans)
        np.testing.assert_array_equal(x.char_spans, y.char_spans)
        np.testing.assert_allclose(x.window_embeddings, y.window_embeddings, atol=2e-6)


def test_a_jsonl_dataset_embeds_like_its_texts(cluster: LocalCluster, tmp_path: Path) -> None:
    texts = _texts()
    # A padding field makes the file span two 256 KiB blocks, with records across the boundary.
    lines = [json.dumps({"id": i, "pad": "x" * 40_000, "body": t}) for i, t in enumerate(texts)]
    source = tmp_path / "corpus.jsonl"
    source.write_text("\n".join(lines * 2) + "\n", encoding="utf-8")
    with cluster.client() as client:
        put = client.put(source, profile="kubo")
        assert put.blocks > 2
        job = client.embed_dataset(put.root, text_field="body", window=128, overlap=16)
        assert job.info.dataset == put.root
        assert job.info.documents == 2 * len(texts)
        from_data = job.result()
        inline = client.embed(texts * 2, window=128, overlap=16).result()
    _same(from_data, inline)
    assert [d.name for d in from_data.documents][:2] == ["line 1", "line 2"]
    logs = "".join(node.log_path.read_text() for node in cluster.nodes)
    assert "bytes of dataset from this node" in logs


def test_documents_streamed_as_a_dataset_embed_like_inline_ones(cluster: LocalCluster) -> None:
    """What the SDK does with inputs past one message: the same job, streamed block by block."""
    docs = [(f"name {i} ✓\n", t) for i, t in enumerate(_texts())]
    sent: list[int] = []
    with cluster.client() as client:
        streamed = client.embed(
            docs, window=128, overlap=16, upload="dataset", progress=sent.append
        )
        assert streamed.info.dataset, "the job reads a stored dataset"
        assert streamed.info.dataset in {d.root for d in client.datasets()}
        inline = client.embed(docs, window=128, overlap=16, upload="inline")
        assert not inline.info.dataset
        _same(streamed.result(), inline.result())
        assert [d.name for d in streamed.result().documents] == [name for name, _ in docs]
        with pytest.raises(InvalidArgumentError, match="upload='bulk'"):
            client.embed(docs, upload="bulk")  # type: ignore[arg-type]
    total = sum(
        len(json.dumps({"name": n, "text": t}, ensure_ascii=False).encode()) + 1 for n, t in docs
    )
    assert sum(sent) == total


def test_a_folder_of_text_files_embeds_like_its_texts(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    texts = _texts()
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(texts[0], encoding="utf-8")
    (folder / "sub" / "b.txt").write_text(texts[2], encoding="utf-8")
    (folder / "notes.md").write_text("not a document", encoding="utf-8")
    with cluster.client() as client:
        put = client.put(folder)
        result = client.embed_dataset(put.root).result()
        inline = client.embed([texts[0], texts[2]]).result()
    assert [d.name for d in result.documents] == ["a.txt", "sub/b.txt"]
    _same(result, inline)


def test_the_cli_embeds_a_dataset(cluster: LocalCluster, tmp_path: Path) -> None:
    source = tmp_path / "lines.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in _texts()), encoding="utf-8")
    with cluster.client() as client:
        root = client.put(source).root

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tokenweave.cli", *args, "--coordinator", cluster.address],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **cluster.client_env()},
            check=False,
        )

    done = cli("submit", "embed", "--dataset", root, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [d["name"] for d in result["documents"]] == [f"line {i + 1}" for i in range(4)]
    both = cli("submit", "embed", str(source), "--dataset", root)
    assert both.returncode == 2
    assert "one of them" in both.stderr


def test_bad_dataset_jobs_are_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n', encoding="utf-8")
    with cluster.client() as client:
        root = client.put(bad).root
        with pytest.raises(InvalidArgumentError, match=r"line 2 .*no 'text' field"):
            client.embed_dataset(root)
        unknown = str(CID.of(RAW, b"never stored"))
        with pytest.raises(NotFoundError, match="no dataset with root"):
            client.embed_dataset(unknown)
        with pytest.raises(InvalidArgumentError, match="CID"):
            client.embed_dataset("not-a-cid")
    with cluster.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        request = jobs_pb2.SubmitJobRequest(
            model="all-minilm-l6-v2",
            documents=[jobs_pb2.Document(name="x", text="y")],
            dataset=jobs_pb2.DatasetSource(root=root),
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not both" in info.value.details()
