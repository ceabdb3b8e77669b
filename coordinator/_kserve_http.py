"""The Open Inference Protocol's REST endpoints (`/v2/...`), beside the OpenAI API on the
coordinator's HTTP port, answered by the same `InferenceServicer` as gRPC.

Inputs come as JSON (`data`: the tensor's values, flat or nested, row-major; at most
`MAX_JSON_BYTES` of JSON, as numbers parsed take many times their text) or with Triton's
binary tensor extension (the JSON header's length in `Inference-Header-Content-Length`, each
input's bytes after it, sized by its `binary_data_size` parameter): either way they become the
gRPC request's raw contents, checked there. Outputs are JSON unless the request asks for binary
data (per output, or `binary_data_output` for all). Errors have the protocol's shape,
`{"error": "<message>"}`, with the HTTP status of the gRPC code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tokenweave import tensors
from tokenweave.coordinator._inference import BYTES, DTYPES, InferenceServicer
from tokenweave.errors import InvalidArgumentError, TokenweaveError, clip
from tokenweave.v1 import inference_pb2 as kserve

#: Who is calling (the gRPC servicer's `context`), from an HTTP request and the RPC it stands for.
Callers = Callable[[Request, str], Awaitable[Any]]

#: What an endpoint does once it knows its caller.
Work = Callable[[Any], Awaitable[Response]]

HEADER_LENGTH = "Inference-Header-Content-Length"
#: The most bytes of JSON a request may hold (its binary tensors are bounded by the body limit).
MAX_JSON_BYTES = 8 * 1024 * 1024
_SERVICE = "/inference.GRPCInferenceService/"
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}


def _error(exc: TokenweaveError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=_HTTP_STATUS.get(exc.status, 500))


def infer_request(
    name: str, body: bytes, header_length: str | None
) -> tuple[kserve.ModelInferRequest, set[str]]:
    """The gRPC request of a REST inference body, and the outputs to send back as binary."""
    size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > size:
            raise InvalidArgumentError(f"{HEADER_LENGTH} {clip(header_length)} is not a length")
        size = int(header_length)
    if size > MAX_JSON_BYTES:  # parsed numbers take ~40 times their text: bound the text
        raise InvalidArgumentError(
            f"the request's JSON is {size} bytes; at most {MAX_JSON_BYTES}: send larger tensors "
            "as binary data (Triton's binary tensor extension)"
        )
    try:
        header = json.loads(body[:size])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"the body is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidArgumentError("the body must be a JSON object with a list of inputs")
    request = kserve.ModelInferRequest(model_name=name, id=str(header.get("id", ""))[:200])
    binary, offset = body[size:], 0
    for item in header["inputs"]:
        if not isinstance(item, dict):
            raise InvalidArgumentError("each input must be a JSON object")
        what = f"input {clip(item.get('name'))}"
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise InvalidArgumentError(f"{what}: shape must be a list of sizes")
        datatype = str(item.get("datatype", ""))
        dtype = DTYPES.get(datatype)
        if datatype == BYTES and item.get("data") is not None:  # JSON: a list of strings
            texts = np.asarray(item["data"], dtype=object).ravel().tolist()
            if len(texts) != math.prod(shape) or not all(isinstance(t, str) for t in texts):
                raise InvalidArgumentError(f"{what} needs {math.prod(shape)} strings as data")
            request.inputs.add(name=str(item.get("name", "")), datatype=datatype, shape=shape)
            request.raw_input_contents.append(tensors.pack_strings([t.encode() for t in texts]))
            continue
        if dtype is None:
            raise InvalidArgumentError(
                f"{what} has datatype {clip(datatype)}; supported: {', '.join(DTYPES)}"
            )
        parameters = item.get("parameters") or {}
        length = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if length is not None:
            if not isinstance(length, int) or length < 0 or offset + length > len(binary):
                raise InvalidArgumentError(f"{what}: binary_data_size {clip(length)} is not there")
            raw = binary[offset : offset + length]
            offset += length
        elif dtype == tensors.STRING:
            raise InvalidArgumentError(f"{what}: BYTES data must be a list of strings")
        else:
            try:
                values = np.asarray(item.get("data"), dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"{what}: data is not {datatype}: {exc}") from None
            if values.size != math.prod(shape):
                raise InvalidArgumentError(
                    f"{what} of shape {shape} needs {math.prod(shape)} values; it has {values.size}"
                )
            raw = tensors.to_bytes(values, dtype)
        request.inputs.add(name=str(item.get("name", "")), datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    everything = bool((header.get("parameters") or {}).get("binary_data_output", False))
    as_binary = set()
    for item in header.get("outputs") or []:
        if not isinstance(item, dict):
            raise InvalidArgumentError("each requested output must be a JSON object")
        request.outputs.add(name=str(item.get("name", "")))
        if everything or (item.get("parameters") or {}).get("binary_data", False):
            as_binary.add(str(item.get("name", "")))
    if everything and not header.get("outputs"):
        as_binary.add("*")
    return request, as_binary


def infer_response(response: kserve.ModelInferResponse, as_binary: set[str]) -> Response:
    outputs, blobs = [], []
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        out: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if tensor.name in as_binary or "*" in as_binary:
            out["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif tensor.datatype == BYTES:
            strings = tensors.unpack_strings(raw, tensor.name)
            out["data"] = [v.decode("utf-8", "replace") for v in strings]
        else:
            out["data"] = tensors.from_bytes(raw, DTYPES[tensor.datatype]).tolist()
        outputs.append(out)
    header = {"model_name": response.model_name, "model_version": response.model_version,
              "id": response.id, "outputs": outputs}  # fmt: skip
    text = json.dumps(header).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(
        b"".join([text, *blobs]),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(text))},
    )


def router(inference: InferenceServicer, callers: Callers) -> APIRouter:
    routes = APIRouter(prefix="/v2")

    async def call(
        request: Request, method: str, work: Callable[[Any], Awaitable[Response]]
    ) -> Response:
        try:
            return await work(await callers(request, _SERVICE + method))
        except TokenweaveError as exc:
            return _error(exc)

    @routes.get("/health/live")
    async def live(request: Request) -> Response:
        async def work(caller: Any) -> Response:
            reply = await inference.ServerLive(kserve.ServerLiveRequest(), caller)
            return JSONResponse({"live": reply.live})

        return await call(request, "ServerLive", work)

    @routes.get("/health/ready")
    async def ready(request: Request) -> Response:
        async def work(caller: Any) -> Response:
            reply = await inference.ServerReady(kserve.ServerReadyRequest(), caller)
            return JSONResponse({"ready": reply.ready}, status_code=200 if reply.ready else 503)

        return await call(request, "ServerReady", work)

    @routes.get("")
    async def server(request: Request) -> Response:
        async def work(caller: Any) -> Response:
            reply = await inference.ServerMetadata(kserve.ServerMetadataRequest(), caller)
            return JSONResponse({"name": reply.name, "version": reply.version, "extensions": []})

        return await call(request, "ServerMetadata", work)

    @routes.get("/models/{name}")
    async def metadata(request: Request, name: str) -> Response:
        async def work(caller: Any) -> Response:
            reply = await inference.ModelMetadata(kserve.ModelMetadataRequest(name=name), caller)

            def tensor_list(items: Any) -> list[dict[str, Any]]:
                return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                        for t in items]  # fmt: skip

            return JSONResponse({"name": reply.name, "versions": list(reply.versions),
                                 "platform": reply.platform, "inputs": tensor_list(reply.inputs),
                                 "outputs": tensor_list(reply.outputs)})  # fmt: skip

        return await call(request, "ModelMetadata", work)

    @routes.get("/models/{name}/ready")
    async def model_ready(request: Request, name: str) -> Response:
        async def work(caller: Any) -> Response:
            reply = await inference.ModelReady(kserve.ModelReadyRequest(name=name), caller)
            status = 200 if reply.ready else 503
            return JSONResponse({"name": name, "ready": reply.ready}, status_code=status)

        return await call(request, "ModelReady", work)

    @routes.post("/models/{name}/infer")
    async def infer(request: Request, name: str) -> Response:
        async def work(caller: Any) -> Response:
            body = await request.body()
            grpc_request, as_binary = infer_request(name, body, request.headers.get(HEADER_LENGTH))
            reply = await inference.ModelInfer(grpc_request, caller)
            return infer_response(reply, as_binary)

        return await call(request, "ModelInfer", work)

    return routes
