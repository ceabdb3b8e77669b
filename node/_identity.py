"""NodeIdentity: the node's secp256k1 key; its Ethereum address receives the operator's rewards."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct

KEY_FILE = "node_key.json"


@dataclass(frozen=True)
class NodeIdentity:
    private_key: bytes

    @property
    def address(self) -> str:
        return str(Account.from_key(self.private_key).address)

    def sign(self, message: str) -> bytes:
        """EIP-191 personal_sign signature (65 bytes, r || s || v)."""
        signed = Account.sign_message(encode_defunct(text=message), self.private_key)
        return bytes(signed.signature)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> NodeIdentity:
        """Load `<data_dir>/node_key.json`, or create it (mode 0600) on first start."""
        path = data_dir / KEY_FILE
        if path.exists():
            data = json.loads(path.read_text())
            return cls(bytes.fromhex(data["private_key"].removeprefix("0x")))
        data_dir.mkdir(parents=True, exist_ok=True)
        account = Account.create()
        identity = cls(bytes(account.key))
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {"address": identity.address, "private_key": "0x" + identity.private_key.hex()}, f
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return identity
