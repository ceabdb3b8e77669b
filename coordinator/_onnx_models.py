"""OnnxModels: developers' ONNX models, registered by name and served through the catalog.

A model's file travels as a dataset of the network (`tokenweave data put`); registering names it.
The coordinator reads the file from the nodes that hold its blocks (its DAG measured first: no
more than `max_bytes`), checks its sha256 against the one the client computed, checks the file
(`inspect_onnx`: standard operators only, no external data, loads in ONNX Runtime — in a child
process bounded in memory and time, since the file is untrusted and the parser native code) and
derives its manifest. The row, the catalog entry (jobs and the Open Inference Protocol plan with
it) and a copy of the file in `<data dir>/models` (the referee runs it from there) are kept.
Names are first come, first served: the same name with the same file again is a no-op, with
another file ALREADY_EXISTS; built-in model names are refused; a client registers at most
`MAX_MODELS_PER_CLIENT` models (nodes load what is registered).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._catalog import CatalogEntry, ModelCatalog
from tokenweave.coordinator._dataset_jobs import DatasetReader
from tokenweave.coordinator._db import DatasetRow, NodeRow, OnnxModelRow, utcnow
from tokenweave.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    ResourceExhaustedError,
    clip,
    error_for_status,
)
from tokenweave.models import (
    DEFAULT_MAX_ERROR,
    OnnxManifest,
    OnnxModelSpec,
    sha256_of,
    store_model,
)

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Checking a model: at most this long, in a process of at most 4 × the file + this memory.
INSPECT_TIMEOUT_S = 120.0
INSPECT_MEMORY_BYTES = 2 << 30
#: Models one client may register (every node that serves `*` fetches and loads them).
MAX_MODELS_PER_CLIENT = 16


@dataclass(frozen=True, slots=True)
class OnnxModelView:
    name: str
    sha256: str
    cid: str
    size: int
    manifest: OnnxManifest
    owner: str
    max_error: float


def _view(row: OnnxModelRow) -> OnnxModelView:
    manifest = OnnxManifest.from_json(row.manifest)
    return OnnxModelView(
        row.name, row.sha256, row.cid, row.size, manifest, row.owner, row.max_error
    )


class OnnxModels:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: ModelCatalog,
        reader: DatasetReader,
        models_dir: Path,
        max_bytes: int,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._reader = reader
        self._models_dir = models_dir
        self._max_bytes = max_bytes
        self._registering = asyncio.Lock()

    async def load(self) -> int:
        """Serve the models registered before this start; returns how many."""
        models = await self.list()
        for model in models:
            self._serve(model)
        return len(models)

    def _serve(self, model: OnnxModelView) -> None:
        spec = OnnxModelSpec(model.name, model.manifest, model.max_error)
        self._catalog.add(CatalogEntry(spec, model.sha256, None))

    async def list(self) -> list[OnnxModelView]:
        async with self._sessions() as session:
            rows = await session.scalars(select(OnnxModelRow).order_by(OnnxModelRow.name))
            return [_view(row) for row in rows]

    async def register(
        self, name: str, cid: str, sha256: str, owner: str, max_error: float = 0.0
    ) -> OnnxModelView:
        if not _NAME.match(name):
            raise InvalidArgumentError(
                f"model name {clip(name)} must be 1-64 lower-case letters, digits, '.', '_' or "
                "'-', starting with a letter or digit"
            )
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise InvalidArgumentError(f"sha256 {clip(sha256)} is not 64 hex digits")
        if not 0.0 <= max_error < 1.0:  # NaN too
            raise InvalidArgumentError(f"max_error={max_error} must be in [0, 1)")
        max_error = max_error or DEFAULT_MAX_ERROR
        async with self._registering:  # one at a time: each may hold a model in memory
            existing = await self._get(name)
            if existing is not None:
                if existing.sha256 == sha256:
                    return existing
                raise AlreadyExistsError(
                    f"model {name} is registered with another file (sha256 "
                    f"{existing.sha256[:16]}…); choose another name"
                )
            if name in self._catalog.names:
                raise AlreadyExistsError(f"model {name} is a built-in model; choose another name")
            if sum(m.owner == owner for m in await self.list()) >= MAX_MODELS_PER_CLIENT:
                raise ResourceExhaustedError(
                    f"this client has registered {MAX_MODELS_PER_CLIENT} models, the most one may"
                )
            await self._check_fits(cid)
            data = await self._reader.file(cid, self._max_bytes)
            if sha256_of(data) != sha256:
                raise InvalidArgumentError(
                    f"the file stored as {clip(cid)} has sha256 {sha256_of(data)[:16]}…, not "
                    f"{sha256[:16]}…: upload it again"
                )
            manifest = await self._inspect(data)
            await asyncio.to_thread(store_model, self._models_dir, data)
            view = OnnxModelView(name, sha256, cid, len(data), manifest, owner, max_error)
            async with self._sessions.begin() as session:
                session.add(
                    OnnxModelRow(
                        name=name,
                        sha256=sha256,
                        cid=cid,
                        size=len(data),
                        manifest=manifest.to_json(),
                        max_error=max_error,
                        owner=owner,
                        created_at=utcnow(),
                    )
                )
            self._serve(view)
        logger.info("model %s registered (sha256 %s…, %d bytes)", name, sha256[:12], len(data))
        return view

    async def _check_fits(self, cid: str) -> None:
        """RESOURCE_EXHAUSTED when no node of the network could hold the model: a node serves
        registered models within a quarter of its memory."""
        async with self._sessions() as session:
            size = await session.scalar(select(DatasetRow.size).where(DatasetRow.root == cid))
            hardware = (await session.scalars(select(NodeRow.hardware))).all()
        largest = max((int(str(h.get("memory_bytes", 0))) for h in hardware), default=0)
        if size is not None and hardware and size * 4 > largest:
            raise ResourceExhaustedError(
                f"the model is {size} bytes; no node of this network can serve it (a node "
                f"serves models within a quarter of its memory; the largest has {largest} bytes)"
            )

    async def _inspect(self, data: bytes) -> OnnxManifest:
        """`inspect_onnx` in a child process, bounded in memory and time: the file is untrusted,
        and ONNX Runtime's parser runs native code on it."""
        self._models_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self._models_dir, suffix=".incoming") as staged:
            await asyncio.to_thread(staged.write, data)
            await asyncio.to_thread(staged.flush)
            limit = 4 * len(data) + INSPECT_MEMORY_BYTES  # the child sets it on itself
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tokenweave.models._onnx_model", staged.name,
                str(self._max_bytes), str(limit), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                out, _ = await asyncio.wait_for(child.communicate(), INSPECT_TIMEOUT_S)
            except TimeoutError:
                child.kill()
                await child.wait()
                raise InvalidArgumentError(
                    f"checking the model took more than {INSPECT_TIMEOUT_S:.0f} s"
                ) from None
        try:
            answer = json.loads(out)
        except ValueError:
            raise InvalidArgumentError(
                f"ONNX Runtime could not check the model (its checker exited {child.returncode})"
            ) from None
        if "manifest" not in answer:
            raise error_for_status(str(answer.get("status")), str(answer.get("message")))
        return OnnxManifest.from_json(json.dumps(answer["manifest"]))

    async def _get(self, name: str) -> OnnxModelView | None:
        async with self._sessions() as session:
            row = await session.get(OnnxModelRow, name)
            return _view(row) if row is not None else None
