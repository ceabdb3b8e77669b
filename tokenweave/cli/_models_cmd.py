"""`tokenweave models prepare|list`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tokenweave.models import ModelCacheError, known_models, load_prepared, prepare_model

console = Console(stderr=True)


def prepare(names: Sequence[str], cache: Path) -> int:
    for name in names or known_models():
        with console.status(f"converting {name} to ONNX in {cache}"):
            prepared = prepare_model(name, cache)
        print(f"{prepared.spec.name} sha256:{prepared.sha256} {prepared.onnx_path}")
    return 0


def list_models(cache: Path, as_json: bool) -> int:
    rows = []
    for name in known_models():
        try:
            prepared = load_prepared(name, cache)
            rows.append(
                {
                    "name": name,
                    "prepared": True,
                    "sha256": prepared.sha256,
                    "path": str(prepared.onnx_path),
                }
            )
        except ModelCacheError:
            rows.append({"name": name, "prepared": False, "sha256": "", "path": ""})
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
