"""The Python SDK: submit long-context jobs to a coordinator and collect their results.

* `Client` (_client.py) — a connection to a coordinator's JobService; `embed()` (inputs past
  32 MiB streamed to the network's storage as a dataset, not sent in one message), `job()`,
  `jobs()`, `nodes()`, `cancel()`.
* `EmbedJob`, `GenerateJob`, `AskJob` (_job.py) — a submitted job: `watch()`, `wait()`,
  `cancel()`, and `result()` (embeddings), `completions()` (`Completion`: text, token ids,
  finish reason) or `answer()` (`Answer` with its `Source` spans). `Client.generate(prompts)`
  and `Client.chat(messages)` run SmolLM2 on the nodes; `Client.ask(documents, question)`
  answers over documents of any length, map-reduce.
* Result values (_convert.py) — `JobInfo`, `DocumentEmbedding` (numpy arrays), `NodeInfo`.
* Datasets (_data.py) — `put()`, `get()`, `datasets()` and `dataset_status()` give
  `PutResult`, `DatasetInfo` and `BlockReplicas`.
* Models (_models.py) — `add_model(path)` registers an ONNX model (stored as a dataset, checked
  by the coordinator), `models()` lists every model served with its nodes: `ModelInfo`;
  `Client.map(model, dataset)` runs one over a dataset of tensors (`MapJob` → `MapResult`).
* Rewards (_rewards.py) — `epochs()`, `close_epoch()`, `rewards(address)` and `claim(key)`, which
  signs the claim with the operator's key and has the coordinator relay it.
* Identity (_keys.py, _channel.py) — `whoami()`, and with an admin key `create_key()`, `keys()`,
  `revoke_key()`. Every call carries the API key (`api_key=` or TOKENWEAVE_API_KEY), over TLS
  when given the coordinator's CA (`tls_ca=` or TOKENWEAVE_TLS_CA).

Errors come back as the classes of `tokenweave.errors`, one per gRPC status. The names are
imported on first use: `import tokenweave.client` alone loads neither gRPC nor web3.
"""

from typing import TYPE_CHECKING

from tokenweave import _lazy_exports

if TYPE_CHECKING:
    from tokenweave.client._client import DEFAULT_GENERATOR, DEFAULT_MODEL, Client
    from tokenweave.client._connection import default_address
    from tokenweave.client._convert import (
        DocumentEmbedding,
        JobInfo,
        JobStatus,
        NodeInfo,
        NodeShare,
    )
    from tokenweave.client._data import BlockReplicas, DatasetInfo, PutResult
    from tokenweave.client._job import (
        Answer,
        AskJob,
        Completion,
        EmbedJob,
        EmbedResult,
        GenerateJob,
        MapJob,
        MapResult,
        Source,
    )
    from tokenweave.client._keys import ApiKeyInfo, Identity
    from tokenweave.client._models import ModelInfo, TensorInfo
    from tokenweave.client._rewards import (
        ChainInfo,
        ClaimResult,
        EpochEarning,
        EpochInfo,
        OperatorRewards,
    )
else:
    __getattr__, __dir__ = _lazy_exports(
        __name__,
        {
            "._client": ("DEFAULT_GENERATOR", "DEFAULT_MODEL", "Client"),
            "._connection": ("default_address",),
            "._job": (
                "Answer",
                "AskJob",
                "Answer",
                "AskJob",
                "Completion",
                "EmbedJob",
                "EmbedResult",
                "GenerateJob",
                "MapJob",
                "MapResult",
                "Source",
            ),
            "._convert": ("DocumentEmbedding", "JobInfo", "JobStatus", "NodeInfo", "NodeShare"),
            "._data": ("BlockReplicas", "DatasetInfo", "PutResult"),
            "._keys": ("ApiKeyInfo", "Identity"),
            "._models": ("ModelInfo", "TensorInfo"),
            "._rewards": (
                "ChainInfo",
                "ClaimResult",
                "EpochEarning",
                "EpochInfo",
                "OperatorRewards",
            ),
        },
    )

__all__ = [
    "DEFAULT_GENERATOR",
    "DEFAULT_MODEL",
    "Answer",
    "ApiKeyInfo",
    "AskJob",
    "BlockReplicas",
    "ChainInfo",
    "ClaimResult",
    "Client",
    "Completion",
    "DatasetInfo",
    "DocumentEmbedding",
    "EmbedJob",
    "EmbedResult",
    "EpochEarning",
    "EpochInfo",
    "GenerateJob",
    "Identity",
    "JobInfo",
    "JobStatus",
    "MapJob",
    "MapResult",
    "ModelInfo",
    "NodeInfo",
    "NodeShare",
    "OperatorRewards",
    "PutResult",
    "Source",
    "TensorInfo",
    "default_address",
]
