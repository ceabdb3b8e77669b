"""CoordinatorConfig: every setting of the coordinator, with its default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CoordinatorConfig:
    #: host:port to listen on; port 0 picks a free one (written to `<data_dir>/address`).
    listen: str = "127.0.0.1:50051"
    #: Holds the SQLite database (unless `db` is given) and the address file.
    data_dir: Path = Path("coordinator-data")
    #: SQLAlchemy async URL; default: sqlite+aiosqlite:///<data_dir>/coordinator.db
    db: str | None = None
    #: Where prepared models are cached (default: the user cache, see `tokenweave models`).
    model_cache: Path | None = None
    models: tuple[str, ...] = ("all-minilm-l6-v2",)
    #: Tokens shared by neighbouring windows when a job does not say.
    default_overlap: int = 32
    windows_per_shard: int = 16
    max_document_bytes: int = 8 * 1024 * 1024
    max_documents: int = 10_000
    #: gRPC messages up to this size are accepted (a whole job's documents arrive in one).
    max_message_bytes: int = 256 * 1024 * 1024
    heartbeat_interval_s: float = 2.0
    #: A node not heard from for this many heartbeat intervals is offline; its shards requeue.
    heartbeat_misses: int = 3
    #: A shard that failed this many times fails its job.
    max_attempts: int = 3
    #: Fraction of shards also run on a second node and compared (a third decides a dispute),
    #: chosen with a secret of this coordinator: a node cannot tell which.
    verify_fraction: float = 0.1
    #: A node's work is all verified until this many of its results agreed with another node's
    #: (new nodes are vetted before they are trusted with sampling).
    vetting_results: int = 10
    #: Lowest per-window cosine at which two outputs of a shard agree.
    verify_tolerance: float = 0.9999
    #: A run past factor × its expected time + slack gets a backup copy on another node.
    straggler_factor: float = 3.0
    straggler_slack_s: float = 2.0
    #: Placement believes a node's claimed speed only up to this until it has finished a shard of
    #: the model, then up to twice what it was seen to do.
    new_node_tokens_per_second: float = 1000.0
    #: Nodes whose reputation (halved by each wrong output or failed audit) falls below this are
    #: refused.
    min_reputation: float = 0.2
    #: Reward tokens per 1,000 model tokens, per model: "MODEL=PRICE".
    prices: tuple[str, ...] = ("all-minilm-l6-v2=1",)
    #: "embedded" (an in-process EVM with fresh contracts) or an EVM JSON-RPC URL.
    chain: str = "embedded"
    #: Hex private key that deploys the contracts and posts roots (required with a URL).
    chain_key: str | None = None
    #: Close an epoch this often; 0 closes epochs only on command (`tokenweave epoch close`).
    epoch_seconds: float = 3600.0
    #: Blocks on top of a root's transaction before its epoch counts as settled.
    confirmations: int = 1
    #: Development chains: ether sent to an operator asking for a claim, so it can pay gas.
    faucet_wei: int = 0
    #: Copies of every dataset block, on distinct nodes.
    replicas: int = 3
    #: Seconds a block provider may be disconnected before its blocks are copied elsewhere.
    repair_grace_s: float = 60.0
    #: Seconds between custody rounds (repair, then audits).
    custody_interval_s: float = 10.0
    #: Possession audits per custody round (random block, random connected provider).
    audits_per_round: int = 4
    #: Seconds in-flight calls get to finish on shutdown.
    shutdown_grace_s: float = 5.0

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite+aiosqlite:///{self.data_dir / 'coordinator.db'}"
