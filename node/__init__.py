"""The node daemon: an operator's machine lending its CPU or GPU to the network.

The code is organized as follows:

* `NodeDaemon` (_daemon.py) — builds the parts below and keeps the node connected until stopped.
* `LeaseSession` (_session.py) — one connection: register by signed challenge, heartbeat, route
  the lease stream, drain on shutdown.
* `keep_connected`, `Backoff` (_reconnect.py) — sessions one after another, jittered backoff.
* `ShardWorker`, `ShardQueue` (_worker.py) — `run(assignment) -> LeaseRequest` through the
  shard's workload (`tokenweave.workloads`); one session's assignments run one at a time,
  cancelled ones skipped, queued ones handed back on drain.
* `NodeResources` (_runtime.py) — what a task is lent: the loaded models, and dataset documents
  read from this node's blocks first, then its peers'.
* `BlockService` (_blocks.py) — dataset blocks: keep, copy from peers, prove, read with heal.
* `NodeConfig` (_config.py) — every setting, with its default.
* `NodeIdentity` (_identity.py) — the secp256k1 key whose Ethereum address earns the rewards.
* `ShardRunner` (_runner.py) — a loaded ONNX model: `embed(windows)`; calibrates tokens/s.
* `detect_hardware` (_hardware.py) — cores, memory, GPUs, ONNX Runtime providers.
"""

from tokenweave.node._config import NodeConfig
from tokenweave.node._daemon import NodeDaemon
from tokenweave.node._hardware import detect_hardware
from tokenweave.node._identity import NodeIdentity
from tokenweave.node._runner import ShardRun, ShardRunner

__all__ = ["NodeConfig", "NodeDaemon", "NodeIdentity", "ShardRun", "ShardRunner", "detect_hardware"]
