// Roots and proofs from @openzeppelin/merkle-tree's StandardMerkleTree for fixed leaves, written
// to tests/fixtures/oz_standard_merkle_tree.json: tokenweave.contracts.RewardTree must give the
// same. Run: npm run tree-fixture (from contracts/).
import { writeFileSync } from "node:fs";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

const address = (i) => "0x" + (BigInt(i) * 0x1111111111111111111n + 7n).toString(16).padStart(40, "0");
const cases = [1, 2, 3, 5, 8, 13].map((n) => {
  const values = Array.from({ length: n }, (_, i) => [address(i + 1), (BigInt(i + 1) * 10n ** 18n + BigInt(i)).toString()]);
  const tree = StandardMerkleTree.of(values, ["address", "uint256"]);
  return {
    values,
    root: tree.root,
    proofs: values.map((v) => tree.getProof(v)),
  };
});
const out = new URL("../../tests/fixtures/oz_standard_merkle_tree.json", import.meta.url);
writeFileSync(out, JSON.stringify({ library: "@openzeppelin/merkle-tree 1.0.8", cases }, null, 1) + "\n");
console.log(`wrote ${cases.length} cases`);
