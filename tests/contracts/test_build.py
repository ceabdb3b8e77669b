"""The committed artifacts are what the sources compile to."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tokenweave.contracts import load_artifact, stale_sources

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
NAMES = ["RewardToken", "RewardDistributor", "NodeStaking"]


@pytest.mark.parametrize("name", NAMES)
def test_artifacts_match_the_sources(name: str) -> None:
    assert stale_sources(name) == [], "sources changed since the build; run `make contracts`"
    artifact = load_artifact(name)
    assert artifact.evm_version == "prague"
    assert artifact.compiler.startswith("0.8.37")
    assert artifact.bytecode.startswith("0x60")
    assert artifact.deployed_bytecode.startswith("0x60")


@pytest.mark.parametrize("name", NAMES)
def test_artifacts_match_the_installed_openzeppelin(name: str) -> None:
    """Cheap where node_modules exists: the library sources hash as when the artifact was built."""
    library = CONTRACTS / "node_modules"
    if not (library / "@openzeppelin" / "contracts").exists():
        pytest.skip("contracts/node_modules is absent (`make setup` runs npm install)")
    for path, digest in load_artifact(name).sources.items():
        if path.startswith("@"):
            actual = hashlib.sha256((library / path).read_bytes()).hexdigest()
            assert actual == digest, f"{path} differs from the build's; run `make contracts`"


def test_recompiling_gives_the_committed_artifacts(tmp_path: Path) -> None:
    if not (CONTRACTS / "node_modules" / "solc").exists() or shutil.which("node") is None:
        pytest.skip("solc-js or node is not installed (`make setup` runs npm install)")
    copy = tmp_path / "contracts"
    shutil.copytree(CONTRACTS / "src", copy / "src")
    shutil.copy(CONTRACTS / "build.mjs", copy / "build.mjs")
    (copy / "node_modules").symlink_to(CONTRACTS / "node_modules")
    (copy / "package.json").symlink_to(CONTRACTS / "package.json")
    subprocess.run(["node", "build.mjs"], cwd=copy, check=True, capture_output=True)
    for name in NAMES:
        fresh = json.loads((copy / "artifacts" / f"{name}.json").read_text())
        committed = json.loads((CONTRACTS / "artifacts" / f"{name}.json").read_text())
        assert fresh["bytecode"] == committed["bytecode"], f"{name}: run `make contracts`"
        assert fresh == committed, f"{name}: run `make contracts` and commit the artifacts"
