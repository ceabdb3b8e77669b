"""ModelService (tokenweave's own) and the Open Inference Protocol's GRPCInferenceService.

ModelService registers developers' ONNX models (`OnnxModels`) and lists every model served with
the connected nodes serving it. GRPCInferenceService lets Triton's and KServe's clients use the
network unchanged: a ModelInfer of a registered model becomes an `infer` job (the batch split
over nodes, verified, metered and billed like any job of its caller), awaited, and answered with
raw output contents; the text models answer too, on BYTES tensors (UTF-8, one text a row):
MiniLM's `text` → `embedding` (an embed job), SmolLM2's `text_input` → `text_output` (a generate
job; `max_tokens`, `temperature`, `top_p`, `seed` as request parameters).

Inputs come typed (`contents`) or raw (`raw_input_contents`, the only way for FP16); every one is
decoded and checked against its declared datatype and shape before the job is planned, and the
workload then checks them against the model's manifest: a bad request is INVALID_ARGUMENT naming
the input, and nothing is recorded for it. A caller that goes away cancels its job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from grpc.aio import ServicerContext

from tokenweave import tensors
from tokenweave.coordinator._auth import current_principal
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._lanes import Lanes
from tokenweave.coordinator._onnx_models import OnnxModels, OnnxModelView
from tokenweave.coordinator._servicers import JobServicer
from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
    clip,
)
from tokenweave.models import DATATYPES, GeneratorSpec, ModelSpec, OnnxModelSpec, TensorSpec
from tokenweave.v1 import inference_pb2 as kserve
from tokenweave.v1 import inference_pb2_grpc, jobs_pb2, models_pb2, models_pb2_grpc

Context = ServicerContext[object, object]

#: The protocol's datatype → numpy's name.
DTYPES = {datatype: dtype for dtype, datatype in DATATYPES.items()}
#: Typed contents: the field of InferTensorContents each datatype is carried in.
_CONTENTS = {
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "UINT8": "uint_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}
SERVER_NAME = "tokenweave"
PLATFORM = "onnxruntime_onnx"
BYTES = "BYTES"
#: The text models' tensors: MiniLM's, and SmolLM2's (Triton's names for an LLM's).
TEXT, EMBEDDING = "text", "embedding"
TEXT_INPUT, TEXT_OUTPUT = "text_input", "text_output"
#: What a generation request may set in its parameters (the generate workload's options).
GENERATION_PARAMETERS = ("max_tokens", "temperature", "top_p", "seed")


def _tensor_infos(specs: Sequence[TensorSpec]) -> list[models_pb2.TensorInfo]:
    return [models_pb2.TensorInfo(name=t.name, datatype=t.datatype, shape=t.shape) for t in specs]


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: OnnxModels, catalog: ModelCatalog, lanes: Lanes) -> None:
        self._models = models
        self._catalog = catalog
        self._lanes = lanes

    def _serving(self, name: str) -> list[str]:
        return sorted(lane.node_id for lane in self._lanes if name in lane.models)

    def _info(self, model: OnnxModelView) -> models_pb2.ModelInfo:
        return models_pb2.ModelInfo(
            name=model.name,
            kind="onnx",
            sha256=model.sha256,
            cid=model.cid,
            size_bytes=model.size,
            inputs=_tensor_infos(model.manifest.inputs),
            outputs=_tensor_infos(model.manifest.outputs),
            node_ids=self._serving(model.name),
            max_error=model.max_error,
        )

    async def RegisterModel(
        self, request: models_pb2.RegisterModelRequest, context: Context
    ) -> models_pb2.RegisterModelResponse:
        model = await self._models.register(
            request.name,
            request.cid,
            request.sha256,
            current_principal().client_id,
            request.max_error,
        )
        return models_pb2.RegisterModelResponse(model=self._info(model))

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Context
    ) -> models_pb2.ListModelsResponse:
        registered = {m.name: m for m in await self._models.list()}
        infos = []
        for name in self._catalog.names:
            if name in registered:
                infos.append(self._info(registered[name]))
                continue
            entry = self._catalog.get(name)
            kind = "generator" if isinstance(entry.spec, GeneratorSpec) else "embedding"
            infos.append(
                models_pb2.ModelInfo(
                    name=name, kind=kind, sha256=entry.sha256, node_ids=self._serving(name)
                )
            )
        return models_pb2.ListModelsResponse(models=infos)


def decode_inputs(request: kserve.ModelInferRequest) -> dict[str, npt.NDArray[np.generic]]:
    """The request's input tensors, each checked against its own datatype and shape."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgumentError(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs"
        )
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for index, tensor in enumerate(request.inputs):
        what = f"input {clip(tensor.name)}"
        if tensor.name in arrays:
            raise InvalidArgumentError(f"{what} is given twice")
        dtype = DTYPES.get(tensor.datatype)
        if dtype is None:
            raise InvalidArgumentError(
                f"{what} has datatype {clip(tensor.datatype)}; supported: {', '.join(DTYPES)}"
            )
        shape = tuple(int(d) for d in tensor.shape)
        if len(shape) > tensors.MAX_RANK or any(d < 0 for d in shape):
            raise InvalidArgumentError(f"{what} has shape {list(shape)[:10]}: not a tensor's")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgumentError(f"{what} has contents and raw_input_contents both")
            arrays[tensor.name] = _from_raw(raw[index], dtype, shape, what)
            continue
        field = _CONTENTS.get(tensor.datatype)
        if field is None:
            raise InvalidArgumentError(f"{what} is {tensor.datatype}: send it raw_input_contents")
        values = getattr(tensor.contents, field)
        if len(values) != math.prod(shape):
            raise InvalidArgumentError(
                f"{what} of shape {list(shape)} needs {math.prod(shape)} values; it has "
                f"{len(values)}"
            )
        if dtype == tensors.STRING:
            arrays[tensor.name] = tensors.strings_array(list(values), shape)
        else:
            arrays[tensor.name] = np.asarray(values, dtype=dtype).reshape(shape)
    return arrays


def _from_raw(
    data: bytes, dtype: str, shape: tuple[int, ...], what: str
) -> npt.NDArray[np.generic]:
    try:
        if dtype == tensors.STRING:
            return tensors.strings_array(tensors.unpack_strings(data), shape)
        return tensors.from_bytes(data, dtype, shape)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{what} of shape {list(shape)}: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class Signature:
    """A model as the protocol shows it: its inputs and outputs, (name, datatype, shape)."""

    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    platform: str


def signature(spec: ModelSpec | GeneratorSpec | OnnxModelSpec) -> Signature:
    """Registered models as their manifests say; the text models take BYTES (UTF-8 texts, one
    a row): MiniLM gives each text's document embedding, SmolLM2 each prompt's completion."""
    if isinstance(spec, OnnxModelSpec):
        return Signature(
            tuple((t.name, t.datatype, t.shape) for t in spec.manifest.inputs),
            tuple((t.name, t.datatype, t.shape) for t in spec.manifest.outputs),
            PLATFORM,
        )
    if isinstance(spec, GeneratorSpec):
        return Signature(
            ((TEXT_INPUT, BYTES, (-1,)),), ((TEXT_OUTPUT, BYTES, (-1,)),), "tokenweave_generate"
        )
    return Signature(
        ((TEXT, BYTES, (-1,)),), ((EMBEDDING, "FP32", (-1, spec.dim)),), "tokenweave_embed"
    )


class InferenceServicer(inference_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, catalog: ModelCatalog, lanes: Lanes, jobs: JobServicer, version: str):
        self._catalog = catalog
        self._lanes = lanes
        self._jobs = jobs
        self._version = version

    async def ServerLive(
        self, request: kserve.ServerLiveRequest, context: Context
    ) -> kserve.ServerLiveResponse:
        return kserve.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: kserve.ServerReadyRequest, context: Context
    ) -> kserve.ServerReadyResponse:
        return kserve.ServerReadyResponse(ready=len(self._lanes) > 0)

    async def ModelReady(
        self, request: kserve.ModelReadyRequest, context: Context
    ) -> kserve.ModelReadyResponse:
        self._catalog.get(request.name)  # NOT_FOUND naming what is served
        return kserve.ModelReadyResponse(ready=any(request.name in n.models for n in self._lanes))

    async def ServerMetadata(
        self, request: kserve.ServerMetadataRequest, context: Context
    ) -> kserve.ServerMetadataResponse:
        return kserve.ServerMetadataResponse(name=SERVER_NAME, version=self._version)

    async def ModelMetadata(
        self, request: kserve.ModelMetadataRequest, context: Context
    ) -> kserve.ModelMetadataResponse:
        spec = self._catalog.get(request.name).spec
        sig = signature(spec)
        meta = kserve.ModelMetadataResponse.TensorMetadata
        return kserve.ModelMetadataResponse(
            name=spec.name,
            versions=["1"],
            platform=sig.platform,
            inputs=[meta(name=n, datatype=d, shape=s) for n, d, s in sig.inputs],
            outputs=[meta(name=n, datatype=d, shape=s) for n, d, s in sig.outputs],
        )

    async def ModelInfer(
        self, request: kserve.ModelInferRequest, context: Context
    ) -> kserve.ModelInferResponse:
        spec = self._catalog.get(request.model_name).spec
        if not any(spec.name in lane.models for lane in self._lanes):
            raise UnavailableError(
                f"no connected node serves model {spec.name} now (nodes load registered models "
                "when they start: tokenweave node --serve)"
            )
        sig = signature(spec)
        outputs = {name: (datatype, shape) for name, datatype, shape in sig.outputs}
        wanted = [o.name for o in request.outputs] or list(outputs)
        for name in wanted:
            if name not in outputs:
                raise InvalidArgumentError(
                    f"the model has no output {clip(name)}; its outputs: "
                    + ", ".join(repr(o) for o in outputs)
                )
        if isinstance(spec, OnnxModelSpec):
            submit = jobs_pb2.SubmitJobRequest(
                workload="infer",
                model=spec.name,
                documents=[
                    jobs_pb2.Document(
                        name=request.id[:200], data=tensors.pack(decode_inputs(request))
                    )
                ],
            )
        else:
            submit = text_job(request, spec, sig)
        job = (await self._jobs.SubmitJob(submit, context)).job
        job, results = await self._jobs.results_when_done(job.job_id, context)
        check_finished(job)
        response = kserve.ModelInferResponse(model_name=spec.name, model_version="1", id=request.id)
        for name in wanted:
            datatype, _ = outputs[name]
            shape, raw = output_of(name, results)
            response.outputs.add(name=name, datatype=datatype, shape=shape)
            response.raw_output_contents.append(raw)
        return response


def output_of(name: str, results: Sequence[jobs_pb2.DocumentResult]) -> tuple[list[int], bytes]:
    """An output's shape and raw contents from a job's results: a registered model's tensor as
    it came (one request, one document); the text models' rows joined, one per document."""
    if name == EMBEDDING:
        rows = [tensors.from_proto(r.outputs[EMBEDDING]) for r in results]
        return [len(rows), int(rows[0].shape[0])], b"".join(row.tobytes() for row in rows)
    if name == TEXT_OUTPUT:
        texts = [bytes(tensors.from_proto(r.outputs["text"])) for r in results]
        return [len(texts)], tensors.pack_strings(texts)
    [document] = results
    tensor = document.outputs[name]
    return list(tensor.shape), tensor.data


def text_job(
    request: kserve.ModelInferRequest, spec: ModelSpec | GeneratorSpec, sig: Signature
) -> jobs_pb2.SubmitJobRequest:
    """An embed or generate job of the request's texts, one document a row."""
    [(name, _, _)] = sig.inputs
    if [t.name for t in request.inputs] != [name]:
        raise InvalidArgumentError(f"model {spec.name} takes one input, {name!r} (BYTES)")
    [tensor] = request.inputs
    if tensor.datatype != BYTES or len(tensor.shape) != 1:
        raise InvalidArgumentError(f"input {name!r} must be BYTES of shape [n]: one text a row")
    if request.raw_input_contents:
        values = tensors.unpack_strings(request.raw_input_contents[0], f"input {name!r}")
    else:
        values = list(tensor.contents.bytes_contents)
    if len(values) != tensor.shape[0] or not values:
        raise InvalidArgumentError(
            f"input {name!r} of shape {list(tensor.shape)} holds {len(values)} texts"
        )
    try:
        texts = [v.decode("utf-8") for v in values]
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"input {name!r} is not UTF-8 text: {exc}") from None
    documents = [jobs_pb2.Document(name=str(i), text=t) for i, t in enumerate(texts)]
    if isinstance(spec, ModelSpec):
        return jobs_pb2.SubmitJobRequest(workload="embed", model=spec.name, documents=documents)
    options = {}
    for key, value in request.parameters.items():
        kind = value.WhichOneof("parameter_choice")
        if key not in GENERATION_PARAMETERS or kind is None:
            raise InvalidArgumentError(
                f"parameter {clip(key)}: {spec.name} takes {', '.join(GENERATION_PARAMETERS)}"
            )
        options[key] = str(getattr(value, kind))
    return jobs_pb2.SubmitJobRequest(
        workload="generate", model=spec.name, documents=documents, options=options
    )


def check_finished(job: jobs_pb2.Job) -> None:
    if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
        raise FailedPreconditionError(
            f"job {job.job_id} {jobs_pb2.JobState.Name(job.state)}: {job.error or 'no result'}"
        )
