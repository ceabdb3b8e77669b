"""ShardWindows: the token windows a shard runs, sent inline or read from dataset blocks.

A dataset shard names documents (byte ranges of files, by CID) and token spans of them: the
documents are read from this node's own blocks where it holds them and from peers otherwise,
tokenized, and kept in a small cache because one long document spans many shards.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.models import encode_document
from tokenweave.node._blocks import DatasetBlocks
from tokenweave.storage import CID, DocumentRef, read_document
from tokenweave.v1 import nodes_pb2

logger = logging.getLogger(__name__)

#: Dataset documents whose token ids a node keeps for the next shard.
DOCUMENT_CACHE = 16

Windows = list[npt.NDArray[np.int64]]


@dataclass
class _Reads:
    local: int = 0
    remote: int = 0


class ShardWindows:
    """Synchronous (it reads blocks and tokenizes): call it from a worker thread."""

    def __init__(self, blocks: DatasetBlocks, cache_size: int = DOCUMENT_CACHE) -> None:
        self._blocks = blocks
        self._cache_size = cache_size
        #: Token ids of recently read dataset documents, by (file, start, end, field, model).
        self._documents: OrderedDict[tuple[str, int, int, str, str], npt.NDArray[np.int64]] = (
            OrderedDict()
        )

    def read(
        self, assignment: nodes_pb2.ShardAssignment, tokenizer: Tokenizer, model_sha256: str
    ) -> Windows:
        """The windows of `assignment`, in order; `model_sha256` keys the token cache."""
        if not assignment.spans:
            return [
                np.frombuffer(w.token_ids, dtype="<u4").astype(np.int64) for w in assignment.windows
            ]
        return self._dataset_windows(assignment, tokenizer, model_sha256)

    def _dataset_windows(
        self, assignment: nodes_pb2.ShardAssignment, tokenizer: Tokenizer, model_sha256: str
    ) -> Windows:
        """Read the shard's documents from dataset blocks (this node's own where it has them,
        peers' otherwise), tokenize them and cut the assigned windows."""
        reads = _Reads()
        seen: dict[CID, bytes] = {}  # documents of one shard often share blocks

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

        documents: dict[int, npt.NDArray[np.int64]] = {}
        for source in assignment.sources:
            key = (source.file, source.start, source.end, source.text_field, model_sha256)
            ids = self._documents.get(key)
            if ids is None:
                ref = DocumentRef(
                    f"document {source.document}", CID.parse(source.file), source.start, source.end
                )
                text = read_document(ref, block, source.text_field or None)
                ids = encode_document(tokenizer, text)
                self._documents[key] = ids
                while len(self._documents) > self._cache_size:
                    self._documents.popitem(last=False)
            else:
                self._documents.move_to_end(key)
            documents[source.document] = ids
        missing = {s.document for s in assignment.spans} - set(documents)
        if missing:
            raise InvalidArgumentError(f"no source for documents {sorted(missing)}")
        if reads.local or reads.remote:
            logger.info(
                "shard %s: read %d bytes of dataset from this node, %d from peers",
                assignment.shard_id,
                reads.local,
                reads.remote,
            )
        return [documents[s.document][s.start : s.end] for s in assignment.spans]
