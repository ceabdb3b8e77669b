"""NodeIdentity: the node's secp256k1 key; its Ethereum address receives the operator's rewards."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from eth_keys.datatypes import PrivateKey

from tokenweave._eip191 import sign_personal
from tokenweave.errors import NotFoundError

logger = logging.getLogger(__name__)

KEY_FILE = "node_key.json"


def _new_private_key() -> bytes:
    """32 random bytes that are a valid secp256k1 private key."""
    while True:
        candidate = os.urandom(32)
        try:
            PrivateKey(candidate)
        except Exception:  # zero or not below the curve order: astronomically rare
            continue
        return candidate


@dataclass(frozen=True)
class NodeIdentity:
    private_key: bytes

    @property
    def address(self) -> str:
        return str(PrivateKey(self.private_key).public_key.to_checksum_address())

    def sign(self, message: str) -> bytes:
        """EIP-191 personal_sign signature (65 bytes, r || s || v with v = 27 or 28), as
        eth_account's `sign_message(encode_defunct(text=...))` makes it."""
        return sign_personal(self.private_key, message)

    @classmethod
    def load(cls, data_dir: Path) -> NodeIdentity:
        """Load `<data_dir>/node_key.json`; NotFoundError when there is none (commands that
        act for a node never make a key: claiming with a new one would claim nothing)."""
        path = data_dir / KEY_FILE
        if not path.exists():
            raise NotFoundError(
                f"no node key in {data_dir.resolve()} ({KEY_FILE}); give the node's own "
                "--data-dir (a node makes its key there when it first starts)"
            )
        data = json.loads(path.read_text())
        return cls(bytes.fromhex(data["private_key"].removeprefix("0x")))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> NodeIdentity:
        """Load `<data_dir>/node_key.json`, or create it (mode 0600) on first start, saying so
        loudly: the key is the node's identity and holds its rewards."""
        path = data_dir / KEY_FILE
        if path.exists():
            return cls.load(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        identity = cls(_new_private_key())
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {"address": identity.address, "private_key": "0x" + identity.private_key.hex()}, f
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        logger.warning(
            "created a NEW node identity %s, its key in %s: this key receives the node's "
            "rewards, so keep it (and back it up); start the node with this --data-dir again "
            "to stay the same node",
            identity.address,
            path.resolve(),
        )
        return identity
