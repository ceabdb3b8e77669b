"""Compiled contracts (contracts/artifacts, made by `make contracts`) and their freshness."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract as build.mjs wrote it."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: str
    evm_version: str
    #: sha256 of every source the compiler read, by import path.
    sources: dict[str, str]


def load_artifact(name: str) -> Artifact:
    """The committed artifact of contract `name` ("RewardToken", "RewardDistributor", ...)."""
    path = ARTIFACTS / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing; run `make contracts`") from None
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler=data["compiler"]["version"],
        evm_version=data["settings"]["evmVersion"],
        sources=data["sources"],
    )


def stale_sources(name: str) -> list[str]:
    """Project sources (src/) whose content differs from what the artifact was built from."""
    artifact = load_artifact(name)
    stale = []
    for path, digest in artifact.sources.items():
        if path.startswith("src/"):
            file = HERE / path
            if not file.exists() or hashlib.sha256(file.read_bytes()).hexdigest() != digest:
                stale.append(path)
    on_disk = {f"src/{p.name}" for p in (HERE / "src").glob("*.sol")}
    return sorted(set(stale) | (on_disk - set(artifact.sources)))
