"""RewardTree: OpenZeppelin StandardMerkleTree for (address, uint256) leaves, in Python.

Same leaves, same root, same proofs as `StandardMerkleTree.of(values, ["address", "uint256"])`
from @openzeppelin/merkle-tree: leaf = keccak256(keccak256(abi.encode(address, amount))); leaves
sorted by hash; the tree kept as an array whose last cells are the leaves; pairs hashed sorted.
tests/contracts checks it against the JavaScript library.
"""

from __future__ import annotations

from collections.abc import Mapping

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

_UINT256_LIMIT = 2**256


def leaf_hash(address: str, amount: int) -> bytes:
    """keccak256(bytes.concat(keccak256(abi.encode(address, amount)))), as the contract checks."""
    return keccak(keccak(encode(["address", "uint256"], [to_checksum_address(address), amount])))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


class RewardTree:
    """A Merkle tree over {address: cumulative amount}; `root` and `proof(address)`.

    Addresses are matched without regard to case; `amounts` is keyed by lower-case address."""

    def __init__(self, amounts: Mapping[str, int]) -> None:
        if not amounts:
            raise ValueError("a reward tree needs at least one leaf")
        if len({a.lower() for a in amounts}) != len(amounts):
            raise ValueError("a reward tree has one leaf per address; some appear twice")
        for address, amount in amounts.items():
            if not 0 <= amount < _UINT256_LIMIT:
                raise ValueError(f"{address}: {amount} is not a uint256")
        leaves = sorted((leaf_hash(a, v), a.lower()) for a, v in amounts.items())
        size = 2 * len(leaves) - 1
        tree: list[bytes] = [b""] * size
        self._index: dict[str, int] = {}
        for i, (digest, address) in enumerate(leaves):
            tree[size - 1 - i] = digest
            self._index[address] = size - 1 - i
        for i in range(size - 1 - len(leaves), -1, -1):
            tree[i] = _hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self._tree = tree
        self.amounts = {a.lower(): v for a, v in amounts.items()}

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def proof(self, address: str) -> list[bytes]:
        """The sibling hashes from `address`'s leaf up to the root (OpenZeppelin's order)."""
        try:
            index = self._index[address.lower()]
        except KeyError:
            raise KeyError(f"{address} is not a leaf of this tree") from None
        proof = []
        while index > 0:
            proof.append(self._tree[index + 1 if index % 2 else index - 1])
            index = (index - 1) // 2
        return proof
