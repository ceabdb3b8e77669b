"""Content-addressed storage: CIDs and UnixFS DAGs that match IPFS's, blocks on disk and between
peers. The coordinator (DatasetIndex, Custodian, DatasetReader) and the node daemon build on it.

The code is organized as follows:

* `CID` (_cid.py) — CIDv1, sha2-256, raw and dag-pb codecs, base32 text; `InvalidCidError`.
* dag-pb and UnixFS encoding (_dagpb.py) — byte for byte as IPFS writes them.
* `import_file` (_importer.py) — a file to raw leaves under a balanced tree of File nodes, with
  the `unixfs-v1-2025` (default) and `kubo` profiles; the root CID equals what IPFS's importer
  gives (tests/storage checks fixtures made by storage/reference with ipfs-unixfs-importer).
  `fastcdc` chunks by content for deduplication across versions (not IPFS-identical).
* `DagLimits`, `measure_dag` (_dagshape.py) — a DAG's expanded size, links, depth and fan-out
  (a block linked many times counts each time), checked before reading, and its declared sizes
  checked against its blocks.
* `read_file`, `file_leaves`, `export` (_exporter.py) — DAGs back to bytes and to disk: each
  block checked against its declared size, entry names that would escape the destination (or
  collide, or be too long) refused before anything is written, output staged and renamed into
  place; a file's leaves listed to fetch them in parallel.
* `Prefetcher` (_prefetch.py) — a block source that fetches the leaves an interior block links
  to ahead of the reader walking the DAG, a few at a time.
* `CancelFlag` (_cancel.py) — stops a long read between blocks and cuts a fetch in flight.
* `read_range`, `range_blocks`, `dataset_documents`, `dataset_files`, `read_document`
  (_documents.py) — byte
  ranges of a file from only the blocks that hold them; a dataset's documents (`.txt` files of a
  directory, or the lines of a JSON Lines file) as `DocumentRef`s, each readable alone.
* `BlockExchange` (_exchange.py) — blocks served and fetched over libp2p (TCP + Noise + Yamux)
  on `/tokenweave/blocks/1.0.0`, in a trio thread behind a blocking `fetch(cid, providers)`;
  parallel providers, every block checked against its CID.
* Replicas (_replicas.py) — rendezvous placement, repair plans, possession proofs for audits.
* `BlockStore` (_blockstore.py) — a node's blocks on disk: atomic writes, verified reads with
  quarantine, names derived from CIDs only, per-block pins, garbage collection, a quota.

The names are imported on first use: only `BlockExchange` and its kin load libp2p and trio.
"""

from typing import TYPE_CHECKING

from tokenweave import _lazy_exports

if TYPE_CHECKING:
    from tokenweave.storage._blockstore import MAX_BLOCK_BYTES, BlockStore, CorruptBlockError
    from tokenweave.storage._cancel import CancelFlag, ReadCancelledError
    from tokenweave.storage._cid import CID, DAG_PB, RAW, InvalidCidError
    from tokenweave.storage._dagshape import DagLimits, DagShape, measure_dag
    from tokenweave.storage._documents import (
        DocumentRef,
        dataset_documents,
        dataset_files,
        range_blocks,
        read_document,
        read_range,
    )
    from tokenweave.storage._exchange import PROTOCOL, BlockExchange, PeerMisbehavedError
    from tokenweave.storage._exporter import EXPORT_LIMITS, export, file_leaves, read_file
    from tokenweave.storage._importer import (
        DEFAULT_PROFILE,
        PROFILES,
        Block,
        DagNode,
        ImportProfile,
        check_entry_name,
        import_directory,
        import_file,
        profile_named,
    )
    from tokenweave.storage._prefetch import Prefetcher
else:
    __getattr__, __dir__ = _lazy_exports(
        __name__,
        {
            "._blockstore": ("MAX_BLOCK_BYTES", "BlockStore", "CorruptBlockError"),
            "._cancel": ("CancelFlag", "ReadCancelledError"),
            "._cid": ("CID", "DAG_PB", "RAW", "InvalidCidError"),
            "._dagshape": ("DagLimits", "DagShape", "measure_dag"),
            "._documents": (
                "DocumentRef",
                "dataset_documents",
                "dataset_files",
                "range_blocks",
                "read_document",
                "read_range",
            ),
            "._exchange": ("PROTOCOL", "BlockExchange", "PeerMisbehavedError"),
            "._exporter": ("EXPORT_LIMITS", "export", "file_leaves", "read_file"),
            "._prefetch": ("Prefetcher",),
            "._importer": (
                "DEFAULT_PROFILE",
                "PROFILES",
                "Block",
                "DagNode",
                "ImportProfile",
                "check_entry_name",
                "import_directory",
                "import_file",
                "profile_named",
            ),
        },
    )

__all__ = [
    "CID",
    "DAG_PB",
    "DEFAULT_PROFILE",
    "EXPORT_LIMITS",
    "MAX_BLOCK_BYTES",
    "PROFILES",
    "PROTOCOL",
    "RAW",
    "Block",
    "BlockExchange",
    "BlockStore",
    "CancelFlag",
    "CorruptBlockError",
    "DagLimits",
    "DagNode",
    "DagShape",
    "DocumentRef",
    "ImportProfile",
    "InvalidCidError",
    "PeerMisbehavedError",
    "Prefetcher",
    "ReadCancelledError",
    "check_entry_name",
    "dataset_documents",
    "dataset_files",
    "export",
    "file_leaves",
    "import_directory",
    "import_file",
    "measure_dag",
    "profile_named",
    "range_blocks",
    "read_document",
    "read_file",
    "read_range",
]
