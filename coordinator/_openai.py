"""The OpenAI API over HTTP (`--http-listen`): the tools developers already have, on the network.

    GET  /v1/models             the models this coordinator serves
    POST /v1/chat/completions   a chat reply (a generate job in chat format)
    POST /v1/completions        prompts continued (a generate job per request)
    POST /v1/embeddings         one vector per input (an embed job: a long input is windowed and
                                its vector is the token-weighted mean of its windows')

A request is a job like any other: it is admitted with the caller's API key (`Authorization:
Bearer …`) under the same access levels, rate limits and quotas as the gRPC call it stands for,
then submitted, followed and read through the JobService servicer as that client. Errors come in
OpenAI's shape ({"error": {"message", "type", "param", "code"}}) with its status codes; a body
that is not valid JSON or has wrong types is a 400 and nothing is recorded. `stream: true` sends
server-sent events: the text as the nodes generate it. FastAPI serves the OpenAPI document at
/openapi.json.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenweave import tensors
from tokenweave.coordinator._auth import Principal, act_as
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._servicers import JobServicer
from tokenweave.errors import InvalidArgumentError, TokenweaveError
from tokenweave.models import GeneratorSpec, OnnxModelSpec
from tokenweave.v1 import generate_pb2, jobs_pb2

#: The gRPC method each route stands for: its access level and rate limit apply.
_SUBMIT = "/tokenweave.v1.JobService/SubmitJob"
_LIST = "/tokenweave.v1.JobService/ListNodes"

Admit = Callable[[str, str | None, str], Awaitable[Principal]]

_STATUS = {
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "OUT_OF_RANGE": (400, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "UNAVAILABLE": (503, "api_error"),
    "DEADLINE_EXCEEDED": (504, "api_error"),
}


def _error(status: int, kind: str, message: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class _Sampling(BaseModel):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1, description="only 1 is supported")

    def options(self, max_tokens: int | None) -> dict[str, str]:
        values = {
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        options = {name: str(value) for name, value in values.items() if value is not None}
        if self.stop:
            options["stop"] = json.dumps([self.stop] if isinstance(self.stop, str) else self.stop)
        return options


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class EmbeddingRequest(BaseModel):
    model: str
    input: str | list[str]
    #: "base64": the vector's little-endian float32 bytes (what the OpenAI SDK asks for).
    encoding_format: Literal["float", "base64"] = "float"


class _Caller:
    """The `context` the servicers are called with: who is calling, from where."""

    def __init__(self, host: str) -> None:
        self._host = host

    def peer(self) -> str:
        return f"ipv4:{self._host}:0"


class OpenAiApi:
    def __init__(
        self, jobs: JobServicer, catalog: ModelCatalog, admit: Admit, max_body: int
    ) -> None:
        self._jobs = jobs
        self._catalog = catalog
        self._admit = admit
        self._max_body = max_body

    async def as_caller(self, request: Request, method: str) -> _Caller:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        host = request.client.host if request.client else "unknown"
        principal = await self._admit(
            method, key.strip() if scheme.lower() == "bearer" and key.strip() else None, host
        )
        act_as(principal)
        return _Caller(host)

    def _kind(self, model: str, generator: bool) -> None:
        spec = self._catalog.get(model).spec  # NOT_FOUND for a model not served
        if isinstance(spec, OnnxModelSpec):
            raise InvalidArgumentError(
                f"model {model!r} takes tensors: use the Open Inference Protocol (/v2/models/…)"
            )
        if isinstance(spec, GeneratorSpec) != generator:
            what = "generates text" if isinstance(spec, GeneratorSpec) else "embeds text"
            raise InvalidArgumentError(f"model {model!r} {what}; use the other endpoint")

    async def _run(
        self, caller: _Caller, request: jobs_pb2.SubmitJobRequest
    ) -> tuple[jobs_pb2.Job, list[jobs_pb2.DocumentResult]]:
        """Submit the job, wait for it, and read its results."""
        submitted = await self._jobs.SubmitJob(request, caller)  # type: ignore[arg-type]
        return await self._result(caller, submitted.job)

    async def _result(
        self, caller: _Caller, job: jobs_pb2.Job
    ) -> tuple[jobs_pb2.Job, list[jobs_pb2.DocumentResult]]:
        """Wait for the job and read its results; a caller that goes away before the job is
        done cancels it."""
        job, documents = await self._jobs.results_when_done(job.job_id, caller)  # type: ignore[arg-type]
        if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
            raise _JobFailedError(job.error or jobs_pb2.JobState.Name(job.state))
        return job, documents

    async def _submit_generation(
        self,
        caller: _Caller,
        body: _Sampling,
        documents: Sequence[tuple[str, str]],
        options: dict[str, str],
    ) -> jobs_pb2.Job:
        self._kind(body.model, generator=True)
        request = jobs_pb2.SubmitJobRequest(
            workload="generate",
            model=body.model,
            documents=[jobs_pb2.Document(name=n, text=t) for n, t in documents],
            options=options,
        )
        submitted = await self._jobs.SubmitJob(request, caller)  # type: ignore[arg-type]
        return submitted.job

    async def _generations(
        self, caller: _Caller, job: jobs_pb2.Job
    ) -> tuple[jobs_pb2.Job, list[dict[str, Any]]]:
        job, results = await self._result(caller, job)
        outputs = []
        for doc in results:
            values = {k: tensors.from_proto(v, k) for k, v in doc.outputs.items()}
            outputs.append(
                {
                    "text": bytes(values["text"]).decode("utf-8"),
                    "finish_reason": bytes(values["finish_reason"]).decode("utf-8"),
                    "prompt_tokens": int(values["prompt_tokens"][0]),
                    "completion_tokens": len(values["token_ids"]),
                }
            )
        return job, outputs

    async def _stream(
        self, caller: _Caller, job: jobs_pb2.Job, model: str, chat: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """Chunks of each choice's text as the nodes generate it, then what the accepted
        results add (nothing, for honest nodes), the finish reasons and the usage. A chat has
        one choice; completions one per prompt (the parts' task is the choice's index)."""
        made = int(time.time())
        base: dict[str, Any] = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{job.job_id}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": made,
            "model": model,
        }

        def chunk(index: int, text: str | None, finish: str | None = None) -> dict[str, Any]:
            if not chat:
                choice = {"index": index, "text": text or "", "finish_reason": finish}
                return {**base, "choices": [{**choice, "logprobs": None}]}
            delta = {} if text is None else {"content": text}
            return {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

        if chat:
            yield {**chunk(0, ""), "choices": [{"index": 0, "delta": {"role": "assistant",
                   "content": ""}, "finish_reason": None}]}  # fmt: skip
        streamed: dict[int, str] = {}
        parts = jobs_pb2.StreamJobOutputRequest(job_id=job.job_id)
        async for part in self._jobs.StreamJobOutput(parts, caller):  # type: ignore[arg-type]
            text = generate_pb2.GenerateOutput.FromString(part.output).text
            if text:
                streamed[part.task] = streamed.get(part.task, "") + text
                yield chunk(part.task, text)
        _, outs = await self._generations(caller, job)
        for index, out in enumerate(outs):
            sent = streamed.get(index, "")
            if out["text"].startswith(sent) and len(out["text"]) > len(sent):
                yield chunk(index, out["text"][len(sent) :])
            yield chunk(index, None, out["finish_reason"])
        yield {**base, "choices": [], "usage": _total_usage(outs)}

    def app(self) -> FastAPI:
        app = FastAPI(
            title="tokenweave",
            version="1",
            description="The OpenAI API, served by a tokenweave coordinator.",
        )
        app.add_middleware(BodyLimit, max_bytes=self._max_body)

        @app.exception_handler(TokenweaveError)
        async def _failed(request: Request, exc: TokenweaveError) -> JSONResponse:
            status, kind = _STATUS.get(exc.status, (500, "api_error"))
            return _error(status, kind, exc.message)

        @app.exception_handler(_JobFailedError)
        async def _job_failed(request: Request, exc: _JobFailedError) -> JSONResponse:
            return _error(500, "api_error", f"the job failed: {exc}")

        @app.exception_handler(StarletteHTTPException)
        async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
            kind = "invalid_request_error" if exc.status_code < 500 else "api_error"
            return _error(exc.status_code, kind, str(exc.detail))

        @app.exception_handler(RequestValidationError)
        async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
            message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid"
            return _error(400, "invalid_request_error", message, where or None)

        @app.get("/v1/models")
        async def models(request: Request) -> dict[str, Any]:
            await self.as_caller(request, _LIST)
            return {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "tokenweave"}
                    for name in self._catalog.names
                    if not isinstance(self._catalog.get(name).spec, OnnxModelSpec)
                ],
            }

        @app.post("/v1/chat/completions", response_model=None)
        async def chat(request: Request, body: ChatCompletionRequest) -> Any:
            caller = await self.as_caller(request, _SUBMIT)
            messages = json.dumps([m.model_dump() for m in body.messages])
            options = {**body.options(body.max_completion_tokens or body.max_tokens)}
            options["format"] = "chat"
            job = await self._submit_generation(caller, body, [("chat", messages)], options)
            if body.stream:
                return _sse(self._stream(caller, job, body.model, chat=True))
            job, [out] = await self._generations(caller, job)
            made = int(time.time())
            ident = f"chatcmpl-{job.job_id}"
            usage = _usage(out)
            return {
                "id": ident,
                "object": "chat.completion",
                "created": made,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": out["text"]},
                        "finish_reason": out["finish_reason"],
                    }
                ],
                "usage": usage,
            }

        @app.post("/v1/completions", response_model=None)
        async def completions(request: Request, body: CompletionRequest) -> Any:
            caller = await self.as_caller(request, _SUBMIT)
            prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
            if not prompts:
                raise InvalidArgumentError("prompt is empty")
            options = body.options(body.max_tokens or 16)  # OpenAI's default for completions
            docs = [(f"prompt-{i}", p) for i, p in enumerate(prompts)]
            job = await self._submit_generation(caller, body, docs, options)
            if body.stream:
                return _sse(self._stream(caller, job, body.model, chat=False))
            job, outs = await self._generations(caller, job)
            made = int(time.time())
            ident = f"cmpl-{job.job_id}"
            choices = [
                {
                    "index": i,
                    "text": o["text"],
                    "finish_reason": o["finish_reason"],
                    "logprobs": None,
                }
                for i, o in enumerate(outs)
            ]
            usage = _total_usage(outs)
            return {
                "id": ident,
                "object": "text_completion",
                "created": made,
                "model": body.model,
                "choices": choices,
                "usage": usage,
            }

        @app.post("/v1/embeddings")
        async def embeddings(request: Request, body: EmbeddingRequest) -> dict[str, Any]:
            caller = await self.as_caller(request, _SUBMIT)
            self._kind(body.model, generator=False)
            inputs = [body.input] if isinstance(body.input, str) else body.input
            if not inputs:
                raise InvalidArgumentError("input is empty")
            submit = jobs_pb2.SubmitJobRequest(
                model=body.model,
                documents=[
                    jobs_pb2.Document(name=f"input-{i}", text=t) for i, t in enumerate(inputs)
                ],
            )
            _, results = await self._run(caller, submit)
            data = []
            for i, doc in enumerate(results):
                vector = np.asarray(
                    tensors.from_proto(doc.outputs["embedding"], "embedding"), dtype="<f4"
                )
                encoded: Any = vector.tolist()
                if body.encoding_format == "base64":
                    encoded = base64.b64encode(vector.tobytes()).decode("ascii")
                data.append({"object": "embedding", "index": i, "embedding": encoded})
            tokens = sum(doc.tokens for doc in results)
            return {
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }

        return app


class _JobFailedError(Exception):
    pass


class _TooLargeError(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body past `max_bytes` (declared or streamed) is a 413 before
    it is held in memory."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length", b"0")
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self._max:
                raise _TooLargeError
            return message

        try:
            if int(declared or 0) > self._max:
                raise _TooLargeError
            await self._app(scope, limited, send)
        except (_TooLargeError, ValueError):
            response = _error(413, "invalid_request_error", f"the body passes {self._max} bytes")
            await response(scope, receive, send)


def _usage(out: dict[str, Any]) -> dict[str, int]:
    prompt, completion = out["prompt_tokens"], out["completion_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _total_usage(outs: Sequence[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(o["prompt_tokens"] for o in outs)
    completion = sum(o["completion_tokens"] for o in outs)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _sse(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")
