"""The node daemon: an operator's machine lending its CPU or GPU to the network.

The code is organized as follows:

* `NodeDaemon` (_daemon.py) — register by signed challenge, heartbeat, hold the lease stream,
  run shards, reconnect with backoff, drain on shutdown.
* `NodeConfig` (_config.py) — every setting, with its default.
* `NodeIdentity` (_identity.py) — the secp256k1 key whose Ethereum address earns the rewards.
* `ShardRunner` (_runner.py) — runs a shard through ONNX Runtime; calibrates tokens/s.
* `detect_hardware` (_hardware.py) — cores, memory, GPUs, ONNX Runtime providers.
"""

from tokenweave.node._config import NodeConfig
from tokenweave.node._daemon import NodeDaemon
from tokenweave.node._hardware import detect_hardware
from tokenweave.node._identity import NodeIdentity
from tokenweave.node._runner import ShardRun, ShardRunner

__all__ = ["NodeConfig", "NodeDaemon", "NodeIdentity", "ShardRun", "ShardRunner", "detect_hardware"]
