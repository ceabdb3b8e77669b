"""The Python SDK: submit long-context jobs to a coordinator and collect their results.

* `Client` (_client.py) — a connection to a coordinator's JobService; `embed()`, `job()`,
  `jobs()`, `nodes()`, `cancel()`.
* `EmbedJob` (_client.py) — a submitted job: `watch()`, `wait()`, `result()`, `cancel()`.
* Result values (_convert.py) — `JobInfo`, `DocumentEmbedding` (numpy arrays), `NodeInfo`.

Errors come back as the classes of `tokenweave.errors`, one per gRPC status.
"""

from tokenweave.client._client import DEFAULT_MODEL, Client, EmbedJob, EmbedResult, default_address
from tokenweave.client._convert import DocumentEmbedding, JobInfo, JobStatus, NodeInfo, NodeShare

__all__ = [
    "DEFAULT_MODEL",
    "Client",
    "DocumentEmbedding",
    "EmbedJob",
    "EmbedResult",
    "JobInfo",
    "JobStatus",
    "NodeInfo",
    "NodeShare",
    "default_address",
]
