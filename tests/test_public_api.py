"""The public names of each package are deliberate: changing them is an API change."""

import pytest

import tokenweave
import tokenweave.cli
import tokenweave.client
import tokenweave.coordinator
import tokenweave.errors
import tokenweave.node


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (tokenweave, ["Client", "EmbedJob", "EmbedResult", "__version__"]),
        (
            tokenweave.client,
            [
                "DEFAULT_MODEL",
                "BlockReplicas",
                "ChainInfo",
                "ClaimResult",
                "Client",
                "DatasetInfo",
                "DocumentEmbedding",
                "EmbedJob",
                "EmbedResult",
                "EpochEarning",
                "EpochInfo",
                "JobInfo",
                "JobStatus",
                "NodeInfo",
                "NodeShare",
                "OperatorRewards",
                "PutResult",
                "default_address",
            ],
        ),
        (tokenweave.cli, ["LocalCluster", "main"]),
        (
            tokenweave.coordinator,
            [
                "CoordinatorConfig",
                "CoordinatorServer",
                "NodeLoad",
                "ShardPlan",
                "WindowPlan",
                "WindowSpan",
                "choose_node",
                "document_embedding",
                "group_into_shards",
            ],
        ),
        (
            tokenweave.node,
            [
                "NodeConfig",
                "NodeDaemon",
                "NodeIdentity",
                "ShardRun",
                "ShardRunner",
                "detect_hardware",
            ],
        ),
    ],
)
def test_exports(module: object, names: list[str]) -> None:
    assert sorted(module.__all__) == sorted(names)  # type: ignore[attr-defined]
    for name in names:
        assert hasattr(module, name), name


def test_every_error_maps_to_a_grpc_status() -> None:
    import grpc

    for name in tokenweave.errors.__all__:
        cls = getattr(tokenweave.errors, name)
        if isinstance(cls, type) and cls is not tokenweave.errors.TokenweaveError:
            assert cls.status in grpc.StatusCode.__members__, cls
            err = tokenweave.errors.error_for_status(cls.status, "why")
            assert type(err) is cls
            assert err.message == "why"


def test_unknown_statuses_become_the_root_error() -> None:
    err = tokenweave.errors.error_for_status("DATA_LOSS", "lost")
    assert type(err) is tokenweave.errors.TokenweaveError
