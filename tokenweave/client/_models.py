"""The ModelService calls of `Client`: register an ONNX model, list the network's models."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tokenweave.client._data import DatasetCalls
from tokenweave.errors import InvalidArgumentError
from tokenweave.v1 import models_pb2


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    #: The Open Inference Protocol's datatype ("FP32", ...).
    datatype: str
    #: -1 for a dimension of any size.
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    #: "embedding", "generator" or "onnx".
    kind: str
    sha256: str
    #: Registered ONNX models: the file's root CID on the network, and its size.
    cid: str
    size_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    #: Connected nodes serving it.
    node_ids: tuple[str, ...]
    #: Registered ONNX models: the relative error two honest runs may differ by.
    max_error: float = 0.0


def _specs(infos: list[models_pb2.TensorInfo]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(t.name, t.datatype, tuple(t.shape)) for t in infos)


def model_info(info: models_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        info.name,
        info.kind,
        info.sha256,
        info.cid,
        info.size_bytes,
        _specs(list(info.inputs)),
        _specs(list(info.outputs)),
        tuple(info.node_ids),
        info.max_error,
    )


class ModelCalls(DatasetCalls):
    def add_model(
        self, path: Path, name: str | None = None, *, max_error: float | None = None
    ) -> ModelInfo:
        """Register an ONNX model file on the network under `name` (default: the file's name
        without `.onnx`): checked here first, stored as a dataset (`put`), then registered.
        `max_error`: the relative error two honest runs' outputs may differ by (default 1e-4;
        more for an fp16 model)."""
        from tokenweave.models import inspect_onnx  # ONNX Runtime loads here, not with the SDK

        path = Path(path)
        data = path.read_bytes()
        inspect_onnx(data)  # the coordinator checks it again; fail before uploading
        chosen = name or path.name.removesuffix(".onnx").lower()
        if not chosen:
            raise InvalidArgumentError(f"{path}: give the model a name")
        stored = self.put(path)
        request = models_pb2.RegisterModelRequest(
            name=chosen,
            cid=stored.root,
            sha256=hashlib.sha256(data).hexdigest(),
            max_error=max_error or 0.0,
        )
        response = self._call(lambda: self._models.RegisterModel(request, timeout=self.timeout))
        return model_info(response.model)

    def models(self) -> list[ModelInfo]:
        """Every model the coordinator serves, with the connected nodes serving each."""
        request = models_pb2.ListModelsRequest()
        response = self._call(lambda: self._models.ListModels(request, timeout=self.timeout))
        return [model_info(m) for m in response.models]
