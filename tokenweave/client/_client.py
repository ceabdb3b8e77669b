"""Client and EmbedJob: the developer's synchronous SDK over JobService."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Literal, Unpack

import grpc

from tokenweave.client._channel import translate as _translate
from tokenweave.client._convert import (
    DocumentOutput,
    JobInfo,
    NodeInfo,
    document_output,
    job_info,
    node_info,
)
from tokenweave.client._data import (
    DEFAULT_PROFILE,
    NAME_FIELD,
    TEXT_FIELD,
    PutResult,
    import_documents,
    upload_requests,
)
from tokenweave.client._job import (
    AskJob,
    EmbedJob,
    GenerateJob,
    GenerationParams,
    Job,
    MapJob,
    generation_options,
)
from tokenweave.client._keys import ApiKeyInfo, Identity, key_info
from tokenweave.client._models import ModelCalls
from tokenweave.client._rewards import (
    ChainInfo,
    ClaimResult,
    EpochInfo,
    OperatorRewards,
    chain_info,
    epoch_info,
    operator_rewards,
    signed_claim,
)
from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    TokenweaveError,
)
from tokenweave.v1 import (
    auth_pb2,
    jobs_pb2,
    rewards_pb2,
)

DEFAULT_MODEL = "all-minilm-l6-v2"
DEFAULT_GENERATOR = "smollm2-135m-instruct"
#: Documents larger than this in all are streamed to the network's storage as a dataset, a
#: block at a time, instead of sent in one SubmitJob message (the coordinator takes 64 MiB).
INLINE_LIMIT_BYTES = 32 * 1024 * 1024
#: How `Client.embed` sends documents: in the SubmitJob message, streamed as a dataset, or
#: whichever their size calls for.
Upload = Literal["auto", "inline", "dataset"]
#: Jobs asked for per ListJobs page (the coordinator's largest page).
JOB_PAGE = 500


def _next_page(token: str, next_token: str) -> str:
    if next_token and next_token == token:
        raise TokenweaveError("the coordinator sent the same page token twice")
    return next_token


def _documents(documents: Sequence[str | tuple[str, str]]) -> list[jobs_pb2.Document]:
    """Texts, or (name, text) pairs; a bare text is named doc-<index>."""
    if isinstance(documents, str):
        raise InvalidArgumentError(
            "documents must be a list of texts (or (name, text) pairs), not one string"
        )
    return [
        jobs_pb2.Document(name=d[0], text=d[1])
        if isinstance(d, tuple)
        else jobs_pb2.Document(name=f"doc-{i}", text=d)
        for i, d in enumerate(documents)
    ]


class Client(ModelCalls):
    """A connection to a coordinator's JobService.

    >>> with Client("127.0.0.1:50051") as client:
    ...     job = client.embed(["a very long text ..."])
    ...     result = job.result()
    """

    def embed(
        self,
        documents: Sequence[str | tuple[str, str]],
        *,
        model: str = DEFAULT_MODEL,
        window: int | None = None,
        overlap: int | None = None,
        upload: Upload = "auto",
        progress: Callable[[int], None] = lambda n: None,
    ) -> EmbedJob:
        """Submit documents (texts, or (name, text) pairs) for long-context embedding.

        `upload="inline"` sends the texts in the SubmitJob message; "dataset" streams them to
        the network's storage first, as a JSON Lines dataset the nodes read from (`progress` is
        called with the bytes of each block sent), and submits that: the result is the same,
        names included. "auto" streams them when they pass `INLINE_LIMIT_BYTES` (32 MiB)."""
        request = self._documents_request(documents, upload, progress)
        request.model = model
        return self._submit(request, window, overlap)

    def _documents_request(
        self,
        documents: Sequence[str | tuple[str, str]],
        upload: Upload,
        progress: Callable[[int], None],
    ) -> jobs_pb2.SubmitJobRequest:
        """A request carrying the documents inline, or a dataset they were streamed to."""
        docs = _documents(documents)
        if upload not in ("auto", "inline", "dataset"):
            raise InvalidArgumentError(f"upload={upload!r}: use 'auto', 'inline' or 'dataset'")
        size = sum(d.ByteSize() for d in docs)
        if upload == "dataset" or (upload == "auto" and size > INLINE_LIMIT_BYTES):
            put = self._put_documents(docs, progress)
            source = jobs_pb2.DatasetSource(
                root=put.root, text_field=TEXT_FIELD, name_field=NAME_FIELD
            )
            return jobs_pb2.SubmitJobRequest(dataset=source)
        return jobs_pb2.SubmitJobRequest(documents=docs)

    def _put_documents(
        self, docs: Sequence[jobs_pb2.Document], progress: Callable[[int], None]
    ) -> PutResult:
        root, blocks = import_documents(((d.name, d.text) for d in docs), DEFAULT_PROFILE)
        name = f"{len(docs)} documents.jsonl"
        return self._put_blocks(upload_requests(root, blocks, name, progress))

    def submit(
        self,
        workload: str,
        documents: Sequence[str | tuple[str, str]],
        *,
        model: str = DEFAULT_MODEL,
        options: Mapping[str, str | int | float] | None = None,
    ) -> Job:
        """Submit documents for any registered workload; `options` are the workload's own
        (e.g. {"window": 128} for "embed"). The job's `outputs()` gives each document's result
        as named numpy arrays."""
        request = jobs_pb2.SubmitJobRequest(
            workload=workload,
            model=model,
            documents=_documents(documents),
            options={k: str(v) for k, v in (options or {}).items()},
        )
        response = self._call(lambda: self._stub.SubmitJob(request, timeout=self.timeout))
        return Job(self, job_info(response.job))

    def generate(
        self,
        prompts: str | Sequence[str],
        *,
        model: str = DEFAULT_GENERATOR,
        **params: Unpack[GenerationParams],
    ) -> GenerateJob:
        """Continue each prompt (text as is) on the network's nodes: `max_tokens`, `temperature`
        (0, greedy, unless given), `top_p`, `seed` (sampling is seeded: the same seed gives the
        same text) and `stop` texts."""
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        options = generation_options(params)
        return self._generate(model, [(f"prompt-{i}", t) for i, t in enumerate(texts)], options)

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        model: str = DEFAULT_GENERATOR,
        **params: Unpack[GenerationParams],
    ) -> GenerateJob:
        """The assistant's reply to `messages` ({"role", "content"} each; roles system, user,
        assistant), rendered with the model's own chat template by the coordinator."""
        options = {**generation_options(params), "format": "chat"}
        conversation = json.dumps([{"role": m["role"], "content": m["content"]} for m in messages])
        return self._generate(model, [("chat", conversation)], options)

    def _generate(
        self, model: str, documents: list[tuple[str, str]], options: dict[str, str]
    ) -> GenerateJob:
        request = jobs_pb2.SubmitJobRequest(
            workload="generate", model=model, documents=_documents(documents), options=options
        )
        response = self._call(lambda: self._stub.SubmitJob(request, timeout=self.timeout))
        return GenerateJob(self, job_info(response.job))

    def ask(
        self,
        documents: Sequence[str | tuple[str, str]],
        question: str,
        *,
        model: str = DEFAULT_GENERATOR,
        dataset: str = "",
        text_field: str = "text",
        upload: Upload = "auto",
        progress: Callable[[int], None] = lambda n: None,
        **options: int,
    ) -> AskJob:
        """Ask a question over documents of any length (texts, or (name, text) pairs; or the
        stored dataset `dataset`, with no documents): each window of `window` tokens is read by
        a node, and the notes are combined until one answer remains (map-reduce). `options`:
        `window`, `overlap`, `note_tokens` (a window's note) and `max_tokens` (the answer).
        Documents are sent as `embed()` sends them (`upload`)."""
        if dataset and documents:
            raise InvalidArgumentError("ask takes documents or a dataset, not both")
        if dataset:
            request = jobs_pb2.SubmitJobRequest(
                dataset=jobs_pb2.DatasetSource(root=dataset, text_field=text_field)
            )
        else:
            request = self._documents_request(documents, upload, progress)
        request.workload = "ask"
        request.model = model
        request.options.update({"question": question, **{k: str(v) for k, v in options.items()}})
        response = self._call(lambda: self._stub.SubmitJob(request, timeout=self.timeout))
        return AskJob(self, job_info(response.job))

    def embed_dataset(
        self,
        root: str,
        *,
        text_field: str = "text",
        model: str = DEFAULT_MODEL,
        window: int | None = None,
        overlap: int | None = None,
    ) -> EmbedJob:
        """Embed a stored dataset (`put()` returns its root): a JSON Lines file, one document per
        line in `text_field`, or a folder, one document per .txt file. Nodes read the documents
        from the dataset's blocks; the result is the same as sending the texts."""
        request = jobs_pb2.SubmitJobRequest(
            model=model, dataset=jobs_pb2.DatasetSource(root=root, text_field=text_field)
        )
        return self._submit(request, window, overlap)

    def map(self, model: str, dataset: str, *, rows_per_task: int | None = None) -> MapJob:
        """Run a registered ONNX model over a stored dataset of tensors (a folder of `.npy`
        files, each a batch of the model's one input, or of `.npz` archives, arrays named by
        input); `result()` stores the outputs as a new dataset and gives its CID."""
        options = {} if rows_per_task is None else {"rows_per_task": str(rows_per_task)}
        request = jobs_pb2.SubmitJobRequest(
            workload="infer",
            model=model,
            dataset=jobs_pb2.DatasetSource(root=dataset),
            options=options,
        )
        response = self._call(lambda: self._stub.SubmitJob(request, timeout=self.timeout))
        return MapJob(self, job_info(response.job))

    def _submit(
        self, request: jobs_pb2.SubmitJobRequest, window: int | None, overlap: int | None
    ) -> EmbedJob:
        for field, value in (("window", window), ("overlap", overlap)):
            if value is not None and not 0 <= value < 2**32:
                raise InvalidArgumentError(f"{field}={value} is out of range")
        if window is not None:
            request.window = window
        if overlap is not None:
            request.overlap = overlap
        response = self._call(lambda: self._stub.SubmitJob(request, timeout=self.timeout))
        return EmbedJob(self, job_info(response.job))

    def job(self, job_id: str) -> EmbedJob:
        return EmbedJob(self, self._get(job_id))

    def _get(self, job_id: str) -> JobInfo:
        response = self._call(
            lambda: self._stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout)
        )
        return job_info(response.job)

    def jobs(self, limit: int = 50, *, all_clients: bool = False) -> list[JobInfo]:
        """Your newest `limit` jobs, newest first, read page by page (0: one page of the
        server's default size); every client's with an admin key and `all_clients`."""
        if not 0 <= limit < 2**32:
            raise InvalidArgumentError(f"limit={limit} is out of range")
        jobs: list[JobInfo] = []
        token = ""
        while True:
            want = min(limit - len(jobs), JOB_PAGE) if limit else 0
            request = jobs_pb2.ListJobsRequest(
                page_size=want, limit=min(want, 1000), page_token=token, all_clients=all_clients
            )
            response = self._call(partial(self._stub.ListJobs, request, timeout=self.timeout))
            jobs.extend(job_info(j) for j in response.jobs)
            token = _next_page(token, response.next_page_token)
            if not token or not limit or len(jobs) >= limit:
                return jobs[:limit] if limit else jobs

    def nodes(self) -> list[NodeInfo]:
        """Every node the coordinator knows, by id (read page by page)."""
        nodes: list[NodeInfo] = []
        token = ""
        while True:
            request = jobs_pb2.ListNodesRequest(page_token=token)
            response = self._call(partial(self._stub.ListNodes, request, timeout=self.timeout))
            nodes.extend(node_info(n) for n in response.nodes)
            token = _next_page(token, response.next_page_token)
            if not token:
                return nodes

    def cancel(self, job_id: str) -> JobInfo:
        response = self._call(
            lambda: self._stub.CancelJob(
                jobs_pb2.CancelJobRequest(job_id=job_id), timeout=self.timeout
            )
        )
        return job_info(response.job)

    # -- rewards ------------------------------------------------------------------------------

    def epochs(self) -> tuple[list[EpochInfo], ChainInfo]:
        response = self._call(
            lambda: self._rewards.ListEpochs(rewards_pb2.ListEpochsRequest(), timeout=self.timeout)
        )
        return [epoch_info(e) for e in response.epochs], chain_info(response.chain)

    def close_epoch(self) -> EpochInfo | None:
        """Close the open epoch now; None when nothing was earned since the last one."""
        response = self._call(
            lambda: self._rewards.CloseEpoch(rewards_pb2.CloseEpochRequest(), timeout=self.timeout)
        )
        return epoch_info(response.epoch) if response.HasField("epoch") else None

    # -- identity and API keys ----------------------------------------------------------------

    def whoami(self) -> Identity:
        """The client this connection's API key belongs to."""
        r = self._call(lambda: self._auth.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=self.timeout))
        return Identity(r.client_id, r.admin, r.key_id)

    def create_key(self, client_id: str, *, admin: bool = False, label: str = "") -> str:
        """A new API key for `client_id` (admin only); the coordinator keeps only its hash."""
        request = auth_pb2.CreateKeyRequest(client_id=client_id, admin=admin, label=label)
        return self._call(lambda: self._auth.CreateKey(request, timeout=self.timeout)).key

    def keys(self, client_id: str = "") -> list[ApiKeyInfo]:
        """Every API key, or one client's (admin only)."""
        request = auth_pb2.ListKeysRequest(client_id=client_id)
        response = self._call(lambda: self._auth.ListKeys(request, timeout=self.timeout))
        return [key_info(k) for k in response.keys]

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        request = auth_pb2.RevokeKeyRequest(key_id=key_id)
        return key_info(self._call(lambda: self._auth.RevokeKey(request, timeout=self.timeout)).key)

    def rewards(self, address: str) -> OperatorRewards:
        response = self._call(
            lambda: self._rewards.GetRewards(
                rewards_pb2.GetRewardsRequest(address=address), timeout=self.timeout
            )
        )
        return operator_rewards(response)

    def claim(self, private_key: bytes) -> ClaimResult:
        """Claim everything the key's address is owed in the latest root on chain.

        The transaction is signed here, with the operator's key, and relayed by the coordinator.
        """
        from eth_account import Account  # only claims need it (a slow import)

        address = Account.from_key(private_key).address
        ticket = self._call(
            lambda: self._rewards.GetClaim(
                rewards_pb2.GetClaimRequest(address=address), timeout=self.timeout
            )
        )
        raw, amount = signed_claim(ticket, private_key)
        sent = self._call(
            lambda: self._rewards.SendTransaction(
                rewards_pb2.SendTransactionRequest(raw_transaction=raw), timeout=self.timeout
            )
        )
        if not sent.success:
            raise FailedPreconditionError(
                f"the claim of {address} reverted: {sent.revert_reason or 'no reason given'}"
            )
        return ClaimResult(sent.tx_hash, ticket.epoch, amount, sent.gas_used)

    def _watch(self, job_id: str, after: int) -> Iterator[JobInfo]:
        stream = self._stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=after))
        for event in stream:
            yield job_info(event.job, event.sequence, event.tokens_per_second)

    def _stream_output(self, job_id: str) -> Iterator[tuple[int, bytes]]:
        """(task, part) as the job's nodes send them, until the job is finished."""
        request = jobs_pb2.StreamJobOutputRequest(job_id=job_id)
        try:
            for response in self._stub.StreamJobOutput(request):
                yield response.task, response.output
        except grpc.RpcError as exc:
            raise _translate(exc) from exc

    def _results(self, job_id: str) -> Iterator[DocumentOutput]:
        stream = self._stub.GetJobResult(
            jobs_pb2.GetJobResultRequest(job_id=job_id, tensors=True), timeout=self.timeout
        )
        try:
            for response in stream:
                yield document_output(response.document)
        except grpc.RpcError as exc:
            raise _translate(exc) from exc
