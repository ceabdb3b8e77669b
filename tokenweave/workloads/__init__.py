"""Workloads: what differs between kinds of work (embedding today; generation and any ONNX model
next). The engine in `tokenweave.coordinator` and `tokenweave.node` never reads a task's bytes.

* The interface (_api.py): `Workload` with plan / run / check / compare / merge / meter, and the
  values that cross it (`JobPlan`, `TaskPlan`, `DocumentPlan`, `TaskRun`, `Usage`, `PlanContext`,
  `NodeRuntime`).
* `EmbedWorkload` (_embed.py), the first workload, with its windows and merge (_windows.py).
* `GenerateWorkload` (_generate.py): a prompt per document, a generation per task.
* `AskWorkload` (_ask.py): a question over long documents, map-reduce in stages.
* `InferWorkload` (_infer.py): a registered ONNX model on tensors, the batch split over nodes.
* The registry (here): `get(name)`, `names()`, `register(workload)`, and `load_plugins()`.

Adding a workload is a module with a `Workload` subclass and one registration: a line in
`_BUILTIN` below for one shipped with tokenweave, or, for one of your own, a module that calls
`register(...)` when imported, named in `TOKENWEAVE_PLUGINS` (comma-separated module names) on
the coordinator and on the nodes that should run it.
"""

from __future__ import annotations

import importlib
import logging
import os

from tokenweave.errors import InvalidArgumentError, clip
from tokenweave.workloads._api import (
    DocumentInput,
    DocumentPlan,
    DocumentSource,
    JobPlan,
    LoadedModel,
    NodeRuntime,
    OnnxRunner,
    PlanContext,
    TaskPlan,
    TaskRun,
    Usage,
    Workload,
)
from tokenweave.workloads._ask import AskWorkload
from tokenweave.workloads._embed import EmbedWorkload
from tokenweave.workloads._generate import GenerateWorkload
from tokenweave.workloads._infer import InferWorkload
from tokenweave.workloads._windows import (
    ShardPlan,
    WindowPlan,
    WindowSpan,
    document_embedding,
    group_into_shards,
)

logger = logging.getLogger(__name__)

#: The workload of a job that names none (and of 0.1 clients).
DEFAULT = "embed"
#: Environment variable naming plugin modules to import (comma-separated).
PLUGINS_ENV = "TOKENWEAVE_PLUGINS"

_BUILTIN: tuple[Workload, ...] = (
    EmbedWorkload(),
    GenerateWorkload(),
    AskWorkload(),
    InferWorkload(),
)
_registry: dict[str, Workload] = {w.name: w for w in _BUILTIN}


def register(workload: Workload) -> None:
    """Make `workload` available under its name (a second registration of a name is an error)."""
    existing = _registry.get(workload.name)
    if existing is not None and existing is not workload:
        raise ValueError(f"a workload named {workload.name!r} is already registered")
    _registry[workload.name] = workload


def get(name: str) -> Workload:
    """The registered workload `name` ("" is the default); InvalidArgumentError if unknown."""
    try:
        return _registry[name or DEFAULT]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown workload {clip(name)}; this process runs {', '.join(names())}"
        ) from None


def names() -> list[str]:
    return sorted(_registry)


def load_plugins(modules: str | None = None) -> list[str]:
    """Import the plugin modules named in `modules` (default: $TOKENWEAVE_PLUGINS); each
    registers its workloads when imported. Returns the modules imported."""
    raw = os.environ.get(PLUGINS_ENV, "") if modules is None else modules
    loaded = []
    for module in (m.strip() for m in raw.split(",")):
        if module:
            importlib.import_module(module)
            loaded.append(module)
    if loaded:
        logger.info("plugins %s loaded; workloads: %s", ", ".join(loaded), ", ".join(names()))
    return loaded


__all__ = [
    "DEFAULT",
    "PLUGINS_ENV",
    "AskWorkload",
    "DocumentInput",
    "DocumentPlan",
    "DocumentSource",
    "EmbedWorkload",
    "InferWorkload",
    "JobPlan",
    "LoadedModel",
    "NodeRuntime",
    "OnnxRunner",
    "PlanContext",
    "ShardPlan",
    "TaskPlan",
    "TaskRun",
    "Usage",
    "WindowPlan",
    "WindowSpan",
    "Workload",
    "document_embedding",
    "get",
    "group_into_shards",
    "load_plugins",
    "names",
    "register",
]
