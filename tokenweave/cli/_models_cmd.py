"""`tokenweave models prepare|cache|add|ls`."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tokenweave.models import (
    ModelCacheError,
    Precision,
    is_generator,
    known_models,
    load_generator,
    load_prepared,
    prepare_generator,
    prepare_model,
)

if TYPE_CHECKING:
    from tokenweave.client import Client, ModelInfo, TensorInfo

console = Console(stderr=True)


def prepare(names: Sequence[str], cache: Path, precision: str = "exact", fp16: bool = False) -> int:
    groups = {"both": ("exact", "fast"), "all": tuple(p.value for p in Precision)}
    precisions = tuple(Precision(p) for p in groups.get(precision, (precision,)))
    for name in names or known_models():
        with console.status(f"converting {name} to ONNX in {cache}"):
            if is_generator(name):
                generator = prepare_generator(name, cache, precisions)
                for chosen, (path, sha256) in generator.decoders.items():
                    print(f"{name} ({chosen.value}) sha256:{sha256} {path}")
                continue
            prepared = prepare_model(name, cache, fp16=fp16)
        print(f"{prepared.spec.name} sha256:{prepared.sha256} {prepared.onnx_path}")
        if prepared.fp16_path is not None:
            print(f"{prepared.spec.name} (fp16) sha256:{prepared.fp16_sha256} {prepared.fp16_path}")
    return 0


def model_rows(name: str, cache: Path) -> list[dict[str, object]]:
    """The cache's files of model `name` (one row, not prepared, when it has none)."""
    try:
        if is_generator(name):
            decoders = load_generator(name, cache).decoders
            return [
                {"name": f"{name} ({p.value})", "prepared": True, "sha256": sha, "path": str(path)}
                for p, (path, sha) in decoders.items()
            ]
        prepared = load_prepared(name, cache)
        rows: list[dict[str, object]] = [
            {
                "name": name,
                "prepared": True,
                "sha256": prepared.sha256,
                "path": str(prepared.onnx_path),
            }
        ]
        if prepared.fp16_path is not None:
            rows.append(
                {
                    "name": f"{name} (fp16)",
                    "prepared": True,
                    "sha256": prepared.fp16_sha256,
                    "path": str(prepared.fp16_path),
                }
            )
        return rows
    except ModelCacheError:
        return [{"name": name, "prepared": False, "sha256": "", "path": ""}]


def list_models(cache: Path, as_json: bool) -> int:
    rows = [row for name in known_models() for row in model_rows(name, cache)]
    if as_json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table("model", "prepared", "sha256", "path")
    for r in rows:
        table.add_row(
            str(r["name"]), "yes" if r["prepared"] else "no", str(r["sha256"]), str(r["path"])
        )
    Console().print(table)
    return 0


def _tensors(infos: Sequence[TensorInfo]) -> str:
    return ", ".join(f"{t.name} {t.datatype}{list(t.shape)}" for t in infos)


def _as_dict(model: ModelInfo) -> dict[str, object]:
    row = dataclasses.asdict(model)
    row["inputs"] = [dataclasses.asdict(t) for t in model.inputs]
    row["outputs"] = [dataclasses.asdict(t) for t in model.outputs]
    return row


def add(
    client: Client, path: Path, name: str | None, max_error: float | None, as_json: bool
) -> int:
    with console.status(f"checking and storing {path}"):
        model = client.add_model(path, name, max_error=max_error)
    if as_json:
        print(json.dumps(_as_dict(model)))
        return 0
    print(f"registered {model.name} sha256:{model.sha256} cid:{model.cid}")
    print(f"  inputs:  {_tensors(model.inputs)}")
    print(f"  outputs: {_tensors(model.outputs)}")
    return 0


def network(client: Client, as_json: bool) -> int:
    models = client.models()
    if as_json:
        print(json.dumps([_as_dict(m) for m in models]))
        return 0
    table = Table("model", "kind", "sha256", "inputs → outputs", "nodes")
    for m in models:
        shapes = f"{_tensors(m.inputs)} → {_tensors(m.outputs)}" if m.inputs else ""
        table.add_row(m.name, m.kind, m.sha256[:12], shapes, str(len(m.node_ids)))
    Console().print(table)
    return 0


def submit_map(
    client: Client, model: str, dataset: str, rows_per_task: int | None, as_json: bool
) -> int:
    job = client.map(model, dataset, rows_per_task=rows_per_task)
    with console.status(f"job {job.id}: {model} over {dataset}"):
        result = job.result()
    if as_json:
        print(json.dumps({"job": job.id, "dataset": result.dataset, "files": list(result.files)}))
        return 0
    print(f"{len(result.files)} files through {model}: outputs stored as {result.dataset}")
    return 0
