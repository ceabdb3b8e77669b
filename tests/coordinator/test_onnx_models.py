"""Registering ONNX models: names, hashes, files checked, first come first served, bounded per
client; the catalog serves what is registered, also after a restart. (The file is read from the
nodes in the integration tests; here a reader stands in for them.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tokenweave.coordinator import _onnx_models as onnx_registry
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._db import DatasetRow, NodeRow, open_database, utcnow
from tokenweave.coordinator._onnx_models import OnnxModels
from tokenweave.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from tokenweave.models import OnnxModelSpec, stored_model_path

from .. import onnx_models

CLASSIFIER = onnx_models.classifier()


class _Files:
    """The nodes' copy of each stored file, by root CID."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    async def file(self, root: str, max_bytes: int) -> bytes:
        try:
            return self.files[root]
        except KeyError:
            raise NotFoundError(f"no dataset {root}") from None


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_registration_checks_names_hashes_and_files(tmp_path: Path) -> None:
    """The file is checked in a child process (here for real)."""
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    files = _Files()
    files.files = {"good": CLASSIFIER, "custom": onnx_models.custom_op(), "other": b"x" * 10}
    catalog = ModelCatalog([])
    models = OnnxModels(sessions, catalog, files, tmp_path / "models", 1 << 20)  # type: ignore[arg-type]
    view = await models.register("classifier", "good", sha(CLASSIFIER), "alice")
    assert view.manifest.inputs[0].name == "image"
    assert isinstance(catalog.get("classifier").spec, OnnxModelSpec)
    assert stored_model_path(tmp_path / "models", view.sha256).read_bytes() == CLASSIFIER
    again = await models.register("classifier", "good", sha(CLASSIFIER), "bob")
    assert again == view, "the same name and file again is a no-op"
    with pytest.raises(AlreadyExistsError, match="registered with another file"):
        await models.register("classifier", "other", sha(b"x" * 10), "bob")
    with pytest.raises(InvalidArgumentError, match="model name 'Bad Name!' must be"):
        await models.register("Bad Name!", "good", sha(CLASSIFIER), "alice")
    with pytest.raises(InvalidArgumentError, match=r"has sha256 .*upload it again"):
        await models.register("liar", "good", sha(b"something else"), "alice")
    with pytest.raises(InvalidArgumentError, match="custom operator"):
        await models.register("evil", "custom", sha(files.files["custom"]), "alice")
    with pytest.raises(NotFoundError):
        await models.register("missing", "nowhere", sha(b""), "alice")
    with pytest.raises(InvalidArgumentError, match="max_error=nan must be in"):
        await models.register("nan", "good", sha(CLASSIFIER), "alice", float("nan"))
    assert view.max_error == 1e-4, "the default"
    assert [m.name for m in await models.list()] == ["classifier"], "nothing else recorded"
    restarted = ModelCatalog([])
    fresh = OnnxModels(sessions, restarted, files, tmp_path / "models", 1 << 20)  # type: ignore[arg-type]
    assert await fresh.load() == 1
    assert restarted.get("classifier").sha256 == view.sha256
    await engine.dispose()


async def test_a_client_registers_a_bounded_number_of_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_registry, "MAX_MODELS_PER_CLIENT", 2)  # 16 by default
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    files = _Files()
    models = OnnxModels(sessions, ModelCatalog([]), files, tmp_path / "m", 1 << 20)  # type: ignore[arg-type]
    for i in range(3):
        data = onnx_models.classifier(batch=i + 1)  # a different file each time
        files.files[f"f{i}"] = data
        if i < 2:
            await models.register(f"m{i}", f"f{i}", sha(data), "mallory")
    with pytest.raises(ResourceExhaustedError, match="registered 2 models"):
        await models.register("one-more", "f2", sha(data), "mallory")
    await models.register("someone-else", "f2", sha(data), "alice")
    await engine.dispose()


async def test_a_checker_that_dies_refuses_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that crashes ONNX Runtime's parser takes the child process down, not the
    coordinator: the model is refused (`false` stands in for the crashing checker)."""
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    files = _Files()
    files.files["good"] = CLASSIFIER
    models = OnnxModels(sessions, ModelCatalog([]), files, tmp_path / "m", 1 << 20)  # type: ignore[arg-type]
    monkeypatch.setattr(onnx_registry.sys, "executable", "false")
    with pytest.raises(InvalidArgumentError, match="could not check the model"):
        await models.register("crasher", "good", sha(CLASSIFIER), "mallory")
    assert await models.list() == []
    assert list((tmp_path / "m").iterdir()) == [], "nothing staged is left"
    await engine.dispose()


async def test_a_model_no_node_could_serve_is_refused(tmp_path: Path) -> None:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    now = utcnow()
    async with sessions.begin() as session:
        session.add(NodeRow(node_id="n", address="0x0", hardware={"memory_bytes": 1000},
                            models=[], version="t", registered_at=now, last_seen=now))  # fmt: skip
        session.add(DatasetRow(root="big", name="m.onnx", size=len(CLASSIFIER), blocks=1,
                               created_at=now, owner="alice"))  # fmt: skip
    files = _Files()
    files.files["big"] = CLASSIFIER
    models = OnnxModels(sessions, ModelCatalog([]), files, tmp_path / "m", 1 << 20)  # type: ignore[arg-type]
    with pytest.raises(ResourceExhaustedError, match="no node of this network can serve it"):
        await models.register("big", "big", sha(CLASSIFIER), "alice")
    await engine.dispose()
