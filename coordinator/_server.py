"""CoordinatorServer: wires the database, the dispatcher and the gRPC services together."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenweave import __version__, workloads
from tokenweave._datadir import DataDirLock
from tokenweave._tls import require_tls_off_loopback, server_credentials
from tokenweave.contracts import EMBEDDED, RewardTree
from tokenweave.coordinator._auth import ApiKeys, AuthInterceptor, RateLimiter
from tokenweave.coordinator._auth_servicer import AuthServicer
from tokenweave.coordinator._bulletin import Bulletin
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._claims import Instances, instance_id
from tokenweave.coordinator._config import CoordinatorConfig
from tokenweave.coordinator._custody import Custodian, CustodyPolicy
from tokenweave.coordinator._data_servicer import DataServicer
from tokenweave.coordinator._dataset_jobs import DATASET_LIMITS, DatasetReader
from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.coordinator._db import open_database
from tokenweave.coordinator._dispatch import Dispatcher
from tokenweave.coordinator._errors import StatusInterceptor
from tokenweave.coordinator._events import JobEvents
from tokenweave.coordinator._http import HttpServer, coordinator_app
from tokenweave.coordinator._inference import InferenceServicer, ModelServicer
from tokenweave.coordinator._jobs import JobLimits, JobStore
from tokenweave.coordinator._kserve_http import router as kserve_router
from tokenweave.coordinator._lanes import Lanes
from tokenweave.coordinator._leader import SETTLEMENT_LOCK, Leadership
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._limits import (
    ServiceLimits,
    WatchStreams,
    server_options,
    service_limits,
)
from tokenweave.coordinator._metering import PriceList
from tokenweave.coordinator._metrics import MetricsRoute
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._onnx_models import OnnxModels
from tokenweave.coordinator._openai import OpenAiApi
from tokenweave.coordinator._paging import JobListing
from tokenweave.coordinator._placer import WorkPolicy
from tokenweave.coordinator._quota import ClientQuota
from tokenweave.coordinator._referee import LocalRunner
from tokenweave.coordinator._reward_chain import open_reward_chain
from tokenweave.coordinator._rewards_servicer import RewardsServicer
from tokenweave.coordinator._rounds import Rounds
from tokenweave.coordinator._servicers import JobServicer, NodeServicer
from tokenweave.coordinator._settlement import EpochSettler, SettlementPolicy
from tokenweave.coordinator._stakes import StakePolicy, Stakes
from tokenweave.coordinator._standing import Standing
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError
from tokenweave.models import default_cache_dir
from tokenweave.storage import EXPORT_LIMITS
from tokenweave.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    data_pb2,
    data_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    nodes_pb2,
    nodes_pb2_grpc,
    rewards_pb2,
    rewards_pb2_grpc,
)

logger = logging.getLogger(__name__)

#: A coordinator is dead for the others after this many times a node's expiry (heartbeat
#: interval × misses) without a heartbeat of its own.
COORDINATOR_TTL_FACTOR = 2

SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    nodes_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name,
    rewards_pb2.DESCRIPTOR.services_by_name["RewardsService"].full_name,
    data_pb2.DESCRIPTOR.services_by_name["DataService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)
#: Ether the embedded chain's faucet gives an operator for the gas of its claims.
DEV_FAUCET_WEI = 10**16


def reward_tree(leaves: Mapping[str, int]) -> tuple[bytes, Callable[[str], Sequence[bytes]]]:
    tree = RewardTree(leaves)
    return tree.root, tree.proof


class ListenError(FailedPreconditionError, OSError):
    """The coordinator's address is taken (port sharing is off) or cannot be bound."""


class CoordinatorServer:
    """Use `await CoordinatorServer.create(config)`, then `wait()`; `shutdown()` is idempotent."""

    def __init__(
        self,
        config: CoordinatorConfig,
        server: aio.Server,
        port: int,
        engine: AsyncEngine,
        dispatcher: Dispatcher,
        health_servicer: health.aio.HealthServicer,
        datasets: DatasetReader,
        lock: DataDirLock,
        instances: Instances,
        bulletin: Bulletin,
    ) -> None:
        self.config = config
        self.port = port
        self._server = server
        self._engine = engine
        self._dispatcher = dispatcher
        self._health = health_servicer
        self._datasets = datasets
        self._lock = lock
        self._instances = instances
        self._bulletin = bulletin
        self._tasks: list[asyncio.Task[None]] = []
        #: The OpenAI API's server, when `config.http_listen` asks for one.
        self.http: HttpServer | None = None
        self._stopped = asyncio.Event()
        self._shutdown_started = False

    @property
    def address(self) -> str:
        host = self.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @classmethod
    async def create(
        cls, config: CoordinatorConfig, limits: ServiceLimits | None = None
    ) -> CoordinatorServer:
        """Start serving; `limits` default to the config's. Raises `DataDirLockedError` when
        another process holds `config.data_dir`."""
        config = config.with_parsed_addresses()
        tls = config.tls_cert is not None or config.tls_key is not None
        if tls and (config.tls_cert is None or config.tls_key is None):
            raise InvalidArgumentError("TLS needs both --tls-cert and --tls-key")
        require_tls_off_loopback(config.listen, tls)
        lock = DataDirLock.acquire(config.data_dir, "coordinator")
        try:
            return await cls._create(config, limits or service_limits(config), lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    async def _create(
        cls, config: CoordinatorConfig, limits: ServiceLimits, lock: DataDirLock
    ) -> CoordinatorServer:
        workloads.load_plugins()
        cache = config.model_cache or default_cache_dir()
        prices = PriceList.parse(config.prices)
        unpriced = [m for m in config.models if m not in prices.per_1k_micro]
        if unpriced:
            raise InvalidArgumentError(
                f"no price for served model(s) {', '.join(unpriced)}; add MODEL=PRICE to --prices"
            )
        catalog = await asyncio.to_thread(ModelCatalog.prepare, config.models, cache)
        engine, sessions = await open_database(config.database_url)
        coordinator_id = instance_id(config.data_dir)
        instances = Instances(
            sessions,
            coordinator_id,
            ttl_s=config.heartbeat_interval_s * config.heartbeat_misses * COORDINATOR_TTL_FACTOR,
        )
        keys = ApiKeys(sessions)
        admin_key = await keys.admin_key_file(config.data_dir)
        ledger = RewardLedger(sessions, reward_tree, prices)
        standing = Standing(
            sessions,
            ledger,
            min_reputation=config.min_reputation,
            vetting_results=config.vetting_results,
        )
        store = JobStore(
            sessions,
            catalog,
            JobLimits(
                max_document_bytes=config.max_document_bytes,
                max_documents=config.max_documents,
                items_per_task=config.windows_per_shard,
                option_defaults={"overlap": str(config.default_overlap)},
                quota=ClientQuota(
                    max_concurrent_jobs=config.max_concurrent_jobs,
                    max_tokens_per_job=config.max_tokens_per_job,
                    max_tokens_per_hour=config.max_tokens_per_hour,
                ),
            ),
            ledger,
            # Files only where the database is this coordinator's alone: with PostgreSQL,
            # every coordinator reads any shard's payload, so they stay in the database.
            payload_dir=config.data_dir / "payloads" if engine.dialect.name == "sqlite" else None,
            owner=coordinator_id,
        )
        registry = NodeRegistry(
            sessions,
            coordinator_id=coordinator_id,
            expiry_seconds=config.heartbeat_interval_s * config.heartbeat_misses,
            standing=standing,
            heartbeat_interval_s=config.heartbeat_interval_s,
        )
        try:
            chain = await asyncio.to_thread(
                functools.partial(
                    open_reward_chain,
                    config.chain,
                    config.chain_key,
                    config.data_dir,
                    poster_key=config.poster_key,
                    unbonding_delay_s=config.unbonding_delay_s,
                    max_mint_per_epoch_wei=config.max_mint_per_epoch_wei,
                )
            )
        except Exception:
            await engine.dispose()
            raise
        lanes = Lanes()
        events = JobEvents()
        dispatcher = Dispatcher(
            store,
            registry,
            standing,
            lanes,
            events,
            instances,
            max_attempts=config.max_attempts,
            policy=WorkPolicy(
                verify_fraction=config.verify_fraction,
                tolerance=config.verify_tolerance,
                straggler_factor=config.straggler_factor,
                straggler_slack_s=config.straggler_slack_s,
                new_node_tokens_per_second=config.new_node_tokens_per_second,
                dispute_wait_s=config.dispute_wait_s,
            ),
            referee=LocalRunner(cache, config.data_dir / "models") if config.referee else None,
            stakes=Stakes(
                chain,
                StakePolicy(
                    min_stake_wei=config.min_stake,
                    full_share_wei=config.stake_for_full_share,
                    slash_fraction=config.slash_fraction,
                ),
            ),
        )
        settler = EpochSettler(
            ledger,
            chain,
            SettlementPolicy(
                epoch_seconds=config.epoch_seconds, confirmations=config.confirmations
            ),
            Leadership(engine, SETTLEMENT_LOCK, "epoch settlement"),
        )
        faucet = config.faucet_wei or (DEV_FAUCET_WEI if config.chain == EMBEDDED else 0)
        bulletin = Bulletin(
            config.database_url, coordinator_id, on_job=events.wake, on_work=lambda: None
        )
        events.publish = bulletin.job_changed
        instances.announce = bulletin.work_added
        await instances.beat("")  # alone or not, before claiming
        await instances.take_over_dead()
        recovered = await dispatcher.recover()
        if recovered:
            logger.info("recovered %d pending shards from the database", recovered)

        auth = AuthInterceptor(keys, RateLimiter(config.rate_limit, config.rate_burst))
        server = aio.server(
            interceptors=[auth, StatusInterceptor()],
            options=server_options(config, limits),
        )
        index = DatasetIndex(sessions)
        datasets = DatasetReader(
            index, dataclasses.replace(DATASET_LIMITS, max_bytes=config.max_dataset_bytes)
        )
        job_servicer = JobServicer(
            dispatcher,
            store,
            events,
            registry,
            ledger,
            datasets,
            WatchStreams(limits.max_watch_streams, limits.max_watch_streams_per_peer),
            JobListing(sessions),
        )
        jobs_pb2_grpc.add_JobServiceServicer_to_server(job_servicer, server)
        onnx_models = OnnxModels(
            sessions, catalog, datasets, config.data_dir / "models", config.max_model_bytes
        )
        registered = await onnx_models.load()
        if registered:
            logger.info("serving %d registered ONNX models", registered)
        models_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(onnx_models, catalog, lanes), server
        )
        inference = InferenceServicer(catalog, lanes, job_servicer, __version__)
        inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(inference, server)
        http = None
        if config.http_listen is not None:
            api = OpenAiApi(job_servicer, catalog, auth.admit, limits.max_receive_message_bytes)
            metrics = MetricsRoute.of(sessions, dispatcher, lanes, config.replicas)
            app = coordinator_app(api, kserve_router(inference, api.as_caller), metrics)
            http = HttpServer(app, config.http_listen, limits, config.tls_cert, config.tls_key)
        nodes_pb2_grpc.add_NodeServiceServicer_to_server(
            NodeServicer(dispatcher, registry),
            server,
        )
        custodian = Custodian(
            lanes,
            index,
            standing,
            CustodyPolicy(
                replicas=config.replicas,
                grace_s=config.repair_grace_s,
                interval_s=config.custody_interval_s,
                audits_per_round=config.audits_per_round,
            ),
        )
        data_pb2_grpc.add_DataServiceServicer_to_server(
            DataServicer(
                lanes,
                index,
                config.replicas,
                dataclasses.replace(EXPORT_LIMITS, max_bytes=config.max_upload_bytes),
                config.max_stored_bytes,
            ),
            server,
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(keys), server)
        rewards_pb2_grpc.add_RewardsServiceServicer_to_server(
            RewardsServicer(ledger, settler, chain, faucet), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        try:
            if config.tls_cert is not None and config.tls_key is not None:
                credentials = server_credentials(
                    config.tls_cert, config.tls_key, config.tls_client_ca
                )
                port = server.add_secure_port(config.listen, credentials)
            else:
                port = server.add_insecure_port(config.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            await engine.dispose()
            raise ListenError(
                f"could not listen on {config.listen}: is another coordinator (or another "
                "program) using that port?"
            )
        self = cls(
            config,
            server,
            port,
            engine,
            dispatcher,
            health_servicer,
            datasets,
            lock,
            instances,
            bulletin,
        )
        rounds = Rounds(
            dispatcher, registry, instances, config.heartbeat_interval_s / 2, lambda: self.address
        )
        bulletin.on_work = rounds.news_of_work
        bulletin.start()
        await server.start()
        if http is not None:
            self.http = http
            http.start()
            http_file = config.data_dir / "http_address"
            http_file.with_suffix(".tmp").write_text(http.url + "\n")
            http_file.with_suffix(".tmp").replace(http_file)
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        loops = (rounds.beat(), rounds.liveness(), rounds.claim_on_news(), settler.run())
        self._tasks += [asyncio.create_task(loop) for loop in (*loops, custodian.run())]
        address_file = config.data_dir / "address"
        address_file.with_suffix(".tmp").write_text(self.address + "\n")
        address_file.with_suffix(".tmp").replace(address_file)
        logger.info(
            "coordinator listening on %s (%s; db %s); admin API key in %s",
            self.address,
            "TLS" + (", mutual" if config.tls_client_ca else "")
            if config.tls_cert
            else "plaintext: loopback only",
            engine.url.render_as_string(),
            admin_key,
        )
        return self

    async def wait(self) -> None:
        await self._stopped.wait()

    async def shutdown(self) -> None:
        """NOT_SERVING, stop accepting calls, let in-flight ones finish, close the database."""
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        logger.info("coordinator shutting down")
        await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.http is not None:
            await self.http.stop()
        await self._dispatcher.shutdown()
        try:  # what this coordinator held is for the others (or its next start) to claim
            await self._instances.leave()
        except Exception as exc:
            logger.warning("could not give this coordinator's shards back: %s", exc)
        await self._bulletin.close()
        self._datasets.cancel_reads()  # a dataset read ends now, not after the grace
        await self._server.stop(self.config.shutdown_grace_s)
        await asyncio.to_thread(self._datasets.close)
        await self._engine.dispose()
        self._lock.release()
        self._stopped.set()
        logger.info("coordinator stopped")
