import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tokenweave._eip191 import recover_personal
from tokenweave.node import NodeIdentity


def test_the_key_is_created_once_and_kept_private(tmp_path: Path) -> None:
    first = NodeIdentity.load_or_create(tmp_path / "node")
    again = NodeIdentity.load_or_create(tmp_path / "node")
    assert first == again
    assert first.address.startswith("0x")
    assert len(first.address) == 42
    key_file = tmp_path / "node" / "node_key.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_signatures_recover_to_the_address(tmp_path: Path) -> None:
    identity = NodeIdentity.load_or_create(tmp_path)
    signature = identity.sign("challenge 123")
    assert len(signature) == 65
    recovered = Account.recover_message(encode_defunct(text="challenge 123"), signature=signature)
    assert recovered == identity.address
    other = Account.recover_message(encode_defunct(text="challenge 124"), signature=signature)
    assert other != identity.address


def test_signatures_and_addresses_match_eth_account(tmp_path: Path) -> None:
    """The node signs with eth_keys alone; what the coordinator checks with eth_account (and any
    wallet with personal_sign) must recover the node's address."""
    for i in range(5):
        identity = NodeIdentity.load_or_create(tmp_path / f"n{i}")
        assert identity.address == Account.from_key(identity.private_key).address
        message = f"tokenweave challenge {i} ✓"
        signature = identity.sign(message)
        expected = Account.sign_message(encode_defunct(text=message), identity.private_key)
        assert signature == bytes(expected.signature)
        recovered = Account.recover_message(encode_defunct(text=message), signature=signature)
        assert recovered == identity.address


def test_recovery_matches_eth_account_and_names_malformed_signatures(tmp_path: Path) -> None:
    identity = NodeIdentity.load_or_create(tmp_path)
    signature = identity.sign("challenge ✓")
    assert recover_personal("challenge ✓", signature) == identity.address.lower()
    low_v = signature[:64] + bytes([signature[64] - 27])  # v = 0 or 1, as some signers send
    assert recover_personal("challenge ✓", low_v) == identity.address.lower()
    assert recover_personal("challenge ✗", signature) != identity.address.lower()
    for bad, why in (
        (signature[:64], "not 64"),
        (signature[:64] + bytes([29]), "v is 29"),
        (bytes(32) + signature[32:], "not a valid secp256k1 signature"),  # r = 0
        (signature[:32] + b"\xff" * 32 + signature[64:], "not a valid secp256k1 signature"),
    ):
        with pytest.raises(ValueError, match=why):
            recover_personal("challenge ✓", bad)
        with pytest.raises(Exception):  # noqa: B017, PT011 - eth_account refuses it too, its own way
            Account.recover_message(encode_defunct(text="challenge ✓"), signature=bad)
