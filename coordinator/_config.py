"""CoordinatorConfig: every setting of the coordinator, with its default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tokenweave._address import HTTP_PORT, parse_address


@dataclass(frozen=True)
class CoordinatorConfig:
    #: host:port to listen on; port 0 picks a free one (written to `<data_dir>/address`).
    listen: str = "127.0.0.1:50051"
    #: host:port of the OpenAI-compatible HTTP API (None: not served); port 0 picks one
    #: (written to `<data_dir>/http_address`).
    http_listen: str | None = None
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
    max_message_bytes: int = 64 * 1024 * 1024
    #: Open connections at most (each costs a file descriptor), and WatchJob streams at most,
    #: in all and per client.
    max_connections: int = 512
    max_watch_streams: int = 1000
    max_watch_streams_per_client: int = 32
    #: TLS certificate and key for the port (PEM); without them it serves plaintext, on
    #: loopback only. With a client CA, callers must show a certificate it signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    #: Calls a second each client (or, without an API key, each host) may make, in bursts of
    #: `rate_burst`.
    rate_limit: float = 50.0
    rate_burst: float = 200.0
    #: Per-client quotas: jobs queued or running, model tokens per job and per hour.
    max_concurrent_jobs: int = 8
    max_tokens_per_job: int = 20_000_000
    max_tokens_per_hour: int = 100_000_000
    #: Bytes a dataset job may read (the expanded size of its DAG), and that an upload may
    #: describe.
    max_dataset_bytes: int = 256 * 1024 * 1024
    #: The largest ONNX model file a client may register.
    max_model_bytes: int = 1024 * 1024 * 1024
    max_upload_bytes: int = 64 * 1024 * 1024 * 1024
    #: Bytes of datasets one client may have uploaded (they land on operators' disks).
    max_stored_bytes: int = 10 * 1024 * 1024 * 1024
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
    #: With no third node to decide a dispute, the coordinator runs the shard itself; without
    #: that (or when it cannot), the job gives up after this many seconds.
    referee: bool = True
    dispute_wait_s: float = 60.0
    #: A run past factor × its expected time + slack gets a backup copy on another node.
    straggler_factor: float = 3.0
    straggler_slack_s: float = 2.0
    #: Placement believes a node's claimed speed only up to this until it has finished a shard of
    #: the model, then up to twice what it was seen to do.
    new_node_tokens_per_second: float = 1000.0
    #: Nodes whose reputation (halved by each wrong output or failed audit) falls below this are
    #: refused.
    min_reputation: float = 0.2
    #: Reward tokens per 1,000 model tokens, per model: "MODEL=PRICE"; "*=PRICE" for every
    #: registered ONNX model without a price of its own (per 1,000 items).
    prices: tuple[str, ...] = ("all-minilm-l6-v2=1", "smollm2-135m-instruct=0.5/2", "*=1")
    #: "embedded" (an in-process EVM with fresh contracts) or an EVM JSON-RPC URL.
    chain: str = "embedded"
    #: Hex private key that deploys the contracts and holds their admin role (required with a
    #: URL).
    chain_key: str | None = None
    #: Hex private key that posts roots and slashes (env TOKENWEAVE_POSTER_KEY); without it the
    #: chain key does, with a warning. The embedded chain uses a development key of its own.
    poster_key: str | None = None
    #: New deployments: seconds unstaked tokens stay slashable (60 on dev chains, 7 days
    #: elsewhere), and the most wei one epoch's root may announce (default 10**24).
    unbonding_delay_s: int | None = None
    max_mint_per_epoch_wei: int | None = None
    #: Reward-token wei an operator must stake for its nodes to get work (0: none), the stake
    #: that earns a node its full share of work (0: stake does not scale work), and the part of
    #: a caught node's stake that is slashed.
    min_stake: int = 0
    stake_for_full_share: int = 0
    slash_fraction: float = 0.5
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

    def with_parsed_addresses(self) -> CoordinatorConfig:
        """This config with its listen addresses as HOST:PORT (a missing port: 50051 for
        gRPC, 8000 for HTTP); InvalidArgumentError for one that is not an address."""
        return dataclasses.replace(
            self,
            listen=parse_address(self.listen, "--listen", listen=True),
            http_listen=None
            if self.http_listen is None
            else parse_address(self.http_listen, "--http-listen", HTTP_PORT, listen=True),
        )

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite+aiosqlite:///{self.data_dir / 'coordinator.db'}"
