"""EIP-191 personal messages ("\\x19Ethereum Signed Message:\\n" + length + text), signed and
recovered with eth_keys alone.

Nodes sign their registration challenge this way and the coordinator recovers the signer; any
wallet's personal_sign makes the same signature (tests compare with eth_account). eth_account
would do both, but importing it costs about 0.6 s of CPU at every process start.
"""

from __future__ import annotations

from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature
from eth_utils.crypto import keccak

#: A signature is r (32 bytes) || s (32 bytes) || v (27 or 28; 0 or 1 is accepted too).
SIGNATURE_BYTES = 65


def personal_message_hash(text: str) -> bytes:
    data = text.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


def sign_personal(private_key: bytes, text: str) -> bytes:
    """The 65-byte personal_sign signature of `text` (v = 27 or 28)."""
    signature = PrivateKey(private_key).sign_msg_hash(personal_message_hash(text))
    return signature.to_bytes()[:64] + bytes([signature.v + 27])


def recover_personal(text: str, signature: bytes) -> str:
    """The lower-case address that signed `text`; ValueError naming what is wrong with a
    malformed signature."""
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"a signature is {SIGNATURE_BYTES} bytes, not {len(signature)}")
    v = signature[64] - 27 if signature[64] >= 27 else signature[64]
    if v not in (0, 1):
        raise ValueError(f"v is {signature[64]}, not 27 or 28")
    try:
        public = Signature(signature[:64] + bytes([v])).recover_public_key_from_msg_hash(
            personal_message_hash(text)
        )
    except (BadSignature, ValueError) as exc:
        raise ValueError(f"not a valid secp256k1 signature ({exc})") from None
    return str(public.to_checksum_address()).lower()
