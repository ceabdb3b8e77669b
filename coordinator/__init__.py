"""The coordinator: takes jobs from developers, shards them over nodes, merges the results.

The engine never reads a task's payload or output: the job's workload (`tokenweave.workloads`)
plans, checks, compares, merges and meters. The code is organized as follows:

* `CoordinatorServer` (_server.py) — wires the database, engine and gRPC services; graceful
  shutdown. `CoordinatorConfig` (_config.py) — every setting, with its default.
* Servicers (_servicers.py, _data_servicer.py, _rewards_servicer.py) — thin adapters; every
  view ⇄ protobuf conversion is in _convert.py; `StatusInterceptor` (_errors.py) is the one
  place domain errors become gRPC statuses.
* The engine:
  - `Dispatcher` (_dispatch.py) — the queue of pending shards and the events that move them.
  - `Flights` (_flights.py) — the pure state machine of leased shards: lease, backup, verify,
    accept, requeue; output checks, `judge` and the verification sample (_verify.py).
  - `Placer` (_placer.py) — which connected node runs a shard, its deadline, and whether it is
    verified (vetting, the keyed sample); `choose_node` (_placement.py) is the pure rule and
    `ObservedSpeeds` (_speeds.py) what the coordinator has seen of each node's speed.
  - `Lanes` (_lanes.py) — each connected node's lease stream, and request/reply correlation for
    block copies and audits (used by the data service and custody alike).
  - `JobEvents` (_events.py) — wakes the watchers of a job.
* State:
  - `JobStore` (_jobs.py) — jobs, documents and shards in SQL (tables in _db.py).
  - `NodeRegistry` (_nodes.py) — challenge-signature registration, sessions, liveness.
  - `Standing` (_standing.py) — the one owner of a node's reputation: audits and verifications
    report there; it updates the database and cuts off a node below the threshold at once.
  - `RewardLedger` (_ledger.py) — the only writer of ledger rows (in the transaction that
    completes the shard) and of withheld rewards; closes epochs of cumulative leaves.
* Rewards: `PriceList` (_metering.py); `EpochSettler` (_settlement.py) posts roots in order on a
  `ContractRewardChain` (_reward_chain.py); `RewardsServicer` serves epochs and claims.
* Datasets: `DataServicer` places uploaded blocks; `DatasetIndex` (_datasets.py) keeps datasets,
  providers and audit challenges; `Custodian` (_custody.py) repairs replicas and audits
  providers; `DatasetReader` (_dataset_jobs.py) turns a dataset's root CID into documents.
* `ModelCatalog` (_catalog.py) — the models served: spec, file hash, tokenizer.
"""

from tokenweave.coordinator._config import CoordinatorConfig
from tokenweave.coordinator._placement import NodeLoad, choose_node
from tokenweave.coordinator._server import CoordinatorServer

__all__ = ["CoordinatorConfig", "CoordinatorServer", "NodeLoad", "choose_node"]
