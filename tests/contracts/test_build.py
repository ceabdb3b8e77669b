"""Committed artifacts are what the sources compile to; the Merkle tree is OpenZeppelin's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tokenweave.contracts import RewardTree, load_artifact, stale_sources

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
FIXTURE = ROOT / "tests" / "fixtures" / "oz_standard_merkle_tree.json"


@pytest.mark.parametrize("name", ["RewardToken", "RewardDistributor"])
def test_artifacts_match_the_sources(name: str) -> None:
    assert stale_sources(name) == [], "sources changed since the build; run `make contracts`"
    artifact = load_artifact(name)
    assert artifact.evm_version == "prague"
    assert artifact.compiler.startswith("0.8.37")


def test_recompiling_gives_the_committed_bytecode(tmp_path: Path) -> None:
    if not (CONTRACTS / "node_modules" / "solc").exists() or shutil.which("node") is None:
        pytest.skip("solc-js is not installed (make contracts installs it)")
    copy = tmp_path / "contracts"
    shutil.copytree(CONTRACTS / "src", copy / "src")
    shutil.copy(CONTRACTS / "build.mjs", copy / "build.mjs")
    (copy / "node_modules").symlink_to(CONTRACTS / "node_modules")
    (copy / "package.json").symlink_to(CONTRACTS / "package.json")
    subprocess.run(["node", "build.mjs"], cwd=copy, check=True, capture_output=True)
    for name in ("RewardToken", "RewardDistributor"):
        fresh = json.loads((copy / "artifacts" / f"{name}.json").read_text())
        committed = json.loads((CONTRACTS / "artifacts" / f"{name}.json").read_text())
        assert fresh == committed, f"{name}: run `make contracts` and commit the artifacts"


def test_reward_tree_matches_openzeppelin_fixture() -> None:
    cases = json.loads(FIXTURE.read_text())["cases"]
    for case in cases:
        tree = RewardTree({address: int(amount) for address, amount in case["values"]})
        assert "0x" + tree.root.hex() == case["root"]
        for (address, _), proof in zip(case["values"], case["proofs"], strict=True):
            assert ["0x" + p.hex() for p in tree.proof(address)] == proof


def test_reward_tree_matches_openzeppelin_live(tmp_path: Path) -> None:
    if not (CONTRACTS / "node_modules" / "@openzeppelin" / "merkle-tree").exists():
        pytest.skip("@openzeppelin/merkle-tree is not installed (make contracts installs it)")
    values = [[f"0x{i:040x}", str(i * 10**17 + 3)] for i in range(1, 12)]
    script = (
        "import { StandardMerkleTree } from '@openzeppelin/merkle-tree';"
        f"const t = StandardMerkleTree.of({json.dumps(values)}, ['address','uint256']);"
        "console.log(JSON.stringify({root: t.root, proof: t.getProof(3)}));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(out.stdout)
    tree = RewardTree({a: int(v) for a, v in values})
    assert "0x" + tree.root.hex() == expected["root"]
    assert ["0x" + p.hex() for p in tree.proof(values[3][0])] == expected["proof"]


def test_a_tree_needs_leaves_and_knows_its_members() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        RewardTree({})
    with pytest.raises(KeyError, match="not a leaf"):
        RewardTree({"0x" + "11" * 20: 1}).proof("0x" + "22" * 20)
