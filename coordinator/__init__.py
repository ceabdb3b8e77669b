"""The coordinator: takes jobs from developers, shards them over nodes, merges the results.

The code is organized as follows:

* `CoordinatorServer` (_server.py) — wires the database, dispatcher and gRPC services; graceful
  shutdown.
* `CoordinatorConfig` (_config.py) — every setting, with its default.
* Servicers (_servicers.py) — thin JobService / NodeService adapters; `StatusInterceptor`
  (_errors.py) is the one place domain errors become gRPC statuses.
* `Dispatcher` (_dispatch.py) — the queue of pending shards and the nodes' lease lanes; leases
  with deadlines, backup copies of stragglers, redundant runs judged by `_verify.py`.
* `JobStore` (_jobs.py) — jobs, documents and shards in SQL (tables in _db.py).
* `NodeRegistry` (_nodes.py) — challenge-signature registration, sessions, liveness.
* Rewards: `PriceList` (_metering.py) prices verified tokens; `RewardLedger` (_ledger.py) keeps
  the append-only ledger and closes epochs of cumulative leaves; `EpochSettler` (_settlement.py)
  posts roots in order and waits for confirmations on a `ContractRewardChain` (_reward_chain.py);
  `RewardsServicer` (_rewards_servicer.py) serves epochs, earnings and claims.
* Datasets: `DataServicer` (_data_servicer.py) places uploaded blocks on nodes; `DatasetIndex`
  (_datasets.py) keeps datasets, providers, audit challenges and audits in SQL; `Custodian`
  (_custody.py) repairs replicas and audits providers; `DatasetReader` (_dataset_jobs.py) turns
  a dataset's root CID into a job's documents.
* Pure domain: `WindowPlan` and shard grouping (_windows.py), `document_embedding` (_merge.py),
  `choose_node` (_placement.py), and `ModelCatalog` (_catalog.py).
"""

from tokenweave.coordinator._config import CoordinatorConfig
from tokenweave.coordinator._merge import document_embedding
from tokenweave.coordinator._placement import NodeLoad, choose_node
from tokenweave.coordinator._server import CoordinatorServer
from tokenweave.coordinator._windows import (
    ShardPlan,
    WindowPlan,
    WindowSpan,
    group_into_shards,
)

__all__ = [
    "CoordinatorConfig",
    "CoordinatorServer",
    "NodeLoad",
    "ShardPlan",
    "WindowPlan",
    "WindowSpan",
    "choose_node",
    "document_embedding",
    "group_into_shards",
]
