"""RewardTree gives @openzeppelin/merkle-tree's StandardMerkleTree roots and proofs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tokenweave.contracts import RewardTree, leaf_hash

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
#: Written by `npm run tree-fixture` (contracts/scripts/tree_fixture.mjs) with the JS library.
FIXTURE = ROOT / "tests" / "fixtures" / "oz_standard_merkle_tree.json"


def _hex(proof: list[bytes]) -> list[str]:
    return ["0x" + p.hex() for p in proof]


def test_reward_tree_matches_the_committed_openzeppelin_fixture() -> None:
    cases = json.loads(FIXTURE.read_text())["cases"]
    assert [len(c["values"]) for c in cases] == [1, 2, 3, 5, 8, 13]
    for case in cases:
        tree = RewardTree({address: int(amount) for address, amount in case["values"]})
        assert "0x" + tree.root.hex() == case["root"]
        for (address, _), proof in zip(case["values"], case["proofs"], strict=True):
            assert _hex(tree.proof(address)) == proof


def test_reward_tree_matches_openzeppelin_run_now() -> None:
    if not (CONTRACTS / "node_modules" / "@openzeppelin" / "merkle-tree").exists():
        pytest.skip("@openzeppelin/merkle-tree is absent (`make setup` runs npm install)")
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    sizes = [1, 2, 4, 7, 16, 33]
    values = {
        n: [[f"0x{(i * 7919 + n):040x}", str(i * 10**17 + n)] for i in range(1, n + 1)]
        for n in sizes
    }
    script = (
        "import { StandardMerkleTree } from '@openzeppelin/merkle-tree';"
        f"const cases = {json.dumps(values)};"
        "const out = {};"
        "for (const [n, v] of Object.entries(cases)) {"
        "  const t = StandardMerkleTree.of(v, ['address', 'uint256']);"
        "  out[n] = {root: t.root, proofs: v.map((_, i) => t.getProof(i))};"
        "}"
        "console.log(JSON.stringify(out));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(out.stdout)
    for n in sizes:
        tree = RewardTree({a: int(v) for a, v in values[n]})
        assert "0x" + tree.root.hex() == expected[str(n)]["root"]
        assert [_hex(tree.proof(a)) for a, _ in values[n]] == expected[str(n)]["proofs"]


def test_addresses_match_without_regard_to_case() -> None:
    address = "0x" + "ab" * 20
    tree = RewardTree({address.upper().replace("0X", "0x"): 5})
    assert tree.proof(address) == []
    assert tree.root == leaf_hash(address, 5)
    assert tree.amounts == {address: 5}


def test_a_tree_refuses_what_no_contract_could_check() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        RewardTree({})
    with pytest.raises(KeyError, match="not a leaf"):
        RewardTree({"0x" + "11" * 20: 1}).proof("0x" + "22" * 20)
    with pytest.raises(ValueError, match="appear twice"):
        RewardTree({"0x" + "ab" * 20: 1, "0x" + "AB" * 20: 2})
    with pytest.raises(ValueError, match="not a uint256"):
        RewardTree({"0x" + "11" * 20: -1})
    with pytest.raises(ValueError, match="not a uint256"):
        RewardTree({"0x" + "11" * 20: 2**256})
