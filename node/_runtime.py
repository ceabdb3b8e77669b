"""What a node lends the tasks it runs (`tokenweave.workloads.NodeRuntime`): its loaded models,
and the dataset documents (texts, or bytes) it reads from blocks — its own first, then its
peers'."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tokenweave.errors import FailedPreconditionError, NotFoundError, clip
from tokenweave.models import Generator, OnnxSession
from tokenweave.node._blocks import DatasetBlocks
from tokenweave.node._runner import ShardRunner
from tokenweave.storage import CID, DocumentRef, read_document, read_range
from tokenweave.workloads import DocumentSource

logger = logging.getLogger(__name__)


@dataclass
class _Reads:
    local: int = 0
    remote: int = 0

    def log(self, label: str) -> None:
        logger.info(
            "%s: read %d bytes of dataset from this node, %d from peers",
            *(label, self.local, self.remote),
        )


def _check_hash(name: str, sha256: str, have: str | None) -> None:
    """FailedPreconditionError unless the node loaded model `name` with this exact hash."""
    if have != sha256:
        raise FailedPreconditionError(
            f"refusing model {clip(name)} sha256 {clip(sha256)}: this node has "
            f"{have or 'no such model'}"
        )


class NodeResources:
    """Synchronous (it reads blocks): workloads call it from a worker thread."""

    def __init__(
        self,
        runners: Mapping[str, ShardRunner],
        blocks: DatasetBlocks,
        generators: Mapping[str, Generator] | None = None,
        onnx: Mapping[str, OnnxSession] | None = None,
    ) -> None:
        self._runners = dict(runners)
        self._generators = dict(generators or {})
        #: Registered ONNX models served, by name.
        self._onnx = dict(onnx or {})
        self._blocks = blocks

    def check(self, name: str, sha256: str) -> None:
        """FailedPreconditionError unless this node loaded model `name` with this exact hash
        (an embedding model, a generator or a registered model)."""
        if name in self._generators:
            self.generator(name, sha256)
        elif name in self._onnx:
            self.onnx(name, sha256)
        else:
            self.model(name, sha256)

    def generator(self, name: str, sha256: str) -> Generator:
        generator = self._generators.get(name)
        _check_hash(name, sha256, generator.sha256 if generator else None)
        assert generator is not None
        return generator

    def onnx(self, name: str, sha256: str) -> OnnxSession:
        session = self._onnx.get(name)
        _check_hash(name, sha256, session.sha256 if session else None)
        assert session is not None
        return session

    def model(self, name: str, sha256: str) -> ShardRunner:
        runner = self._runners.get(name)
        _check_hash(name, sha256, runner.model.sha256 if runner else None)
        assert runner is not None
        return runner

    def read_document(self, source: DocumentSource, label: str) -> str:
        block, reads = self._reader()
        ref = DocumentRef(label, CID.parse(source.file), source.start, source.end)
        text = read_document(ref, block, source.text_field or None)
        reads.log(label)
        return text

    def read_bytes(self, source: DocumentSource, label: str) -> bytes:
        block, reads = self._reader()
        data = read_range(CID.parse(source.file), block, source.start, source.end)
        reads.log(label)
        return data

    def _reader(self) -> tuple[Callable[[CID], bytes], _Reads]:
        """A block source for one read — this node's blocks first, then its peers' — and its
        counts."""
        reads = _Reads()
        seen: dict[CID, bytes] = {}  # a range may cross a block more than once

        def block(cid: CID) -> bytes:
            data = seen.get(cid)
            if data is not None:
                return data
            try:
                data = self._blocks.read_block(cid)
                reads.local += len(data)
            except NotFoundError:
                data = self._blocks.fetch_block(cid)
                reads.remote += len(data)
            seen[cid] = data
            return data

        return block, reads
