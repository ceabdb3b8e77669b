"""The public names of each package are deliberate: changing them is an API change.

Packages that import their names on first use (`_lazy_exports`, tokenweave/__init__.py) list them
in `__all__`, import them under `if TYPE_CHECKING:` for type checkers, and resolve them at run time:
the three must agree.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from types import ModuleType

import pytest

import tokenweave.errors

EXPORTS = {
    "tokenweave": ["Client", "EmbedJob", "EmbedResult", "__version__"],
    "tokenweave.client": [
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
    ],
    "tokenweave.cli": ["LocalCluster", "main"],
    "tokenweave.coordinator": ["CoordinatorConfig", "CoordinatorServer", "NodeLoad", "choose_node"],
    "tokenweave.node": [
        "NodeConfig",
        "NodeDaemon",
        "NodeIdentity",
        "ShardRun",
        "ShardRunner",
        "detect_hardware",
    ],
}

LAZY_PACKAGES = [
    "tokenweave",
    "tokenweave.client",
    "tokenweave.cli",
    "tokenweave.storage",
    "tokenweave.contracts",
]


@pytest.mark.parametrize(("module_name", "names"), EXPORTS.items(), ids=list(EXPORTS))
def test_exports(module_name: str, names: list[str]) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(names)
    for name in names:
        assert hasattr(module, name), name


def _top_level_names(module: ModuleType) -> tuple[set[str], set[str]]:
    """(names imported under `if TYPE_CHECKING:`, names bound at run time) of a package's
    __init__.py, read from its source."""
    tree = ast.parse(inspect.getsource(module))
    for_type_checkers: set[str] = set()
    at_run_time: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for_type_checkers |= {alias.asname or alias.name for alias in stmt.names}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            at_run_time |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Assign):
            at_run_time |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return for_type_checkers, at_run_time


@pytest.mark.parametrize("module_name", LAZY_PACKAGES)
def test_lazy_names_are_listed_typed_and_resolved(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for_type_checkers, at_run_time = _top_level_names(module)
    assert for_type_checkers, f"{module_name} imports nothing under TYPE_CHECKING"
    assert not for_type_checkers & at_run_time
    assert for_type_checkers | (at_run_time & set(module.__all__)) == set(module.__all__)
    assert set(module.__all__) <= set(dir(module))
    for name in for_type_checkers:
        value = getattr(module, name)
        assert vars(module)[name] is value, f"{module_name}.{name} is not kept after first use"
    with pytest.raises(AttributeError, match="no attribute 'not_exported'"):
        _ = module.not_exported


def test_every_error_maps_to_a_grpc_status() -> None:
    import grpc

    for name in tokenweave.errors.__all__:
        cls = getattr(tokenweave.errors, name)
        if isinstance(cls, type) and cls is not tokenweave.errors.TokenweaveError:
            assert cls.status in grpc.StatusCode.__members__, cls
            err = tokenweave.errors.error_for_status(cls.status, "why")
            # A refinement the SDK raises itself (JobFailedError) comes back as its parent.
            assert type(err) is cls or type(err) is cls.__base__
            assert err.message == "why"


def test_unknown_statuses_become_the_root_error() -> None:
    err = tokenweave.errors.error_for_status("DATA_LOSS", "lost")
    assert type(err) is tokenweave.errors.TokenweaveError
