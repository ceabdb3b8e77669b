"""Reverts as Python exceptions: `ContractRevertError` names the custom error and decodes its
arguments, from web3 (JSON-RPC chains) and eth-tester (the embedded chain) alike."""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Sequence
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from tokenweave.errors import FailedPreconditionError

#: Custom errors by 4-byte selector: (name, argument types).
ErrorTable = dict[bytes, tuple[str, list[str]]]


class ContractRevertError(FailedPreconditionError):
    """A call or transaction reverted; `error` is the custom error's name ("unknown" when the
    revert carried none we know), `arguments` its decoded arguments."""

    def __init__(self, error: str, detail: str = "", arguments: tuple[Any, ...] = ()) -> None:
        super().__init__(f"reverted with {error}" + (f": {detail}" if detail else ""))
        self.error = error
        self.arguments = arguments


def error_table(abi: Sequence[Any]) -> ErrorTable:
    """The custom errors an ABI declares, by selector."""
    out: ErrorTable = {}
    for item in abi:
        if item.get("type") == "error":
            types = [i["type"] for i in item["inputs"]]
            out[keccak(text=f"{item['name']}({','.join(types)})")[:4]] = (item["name"], types)
    return out


def _revert_data(exc: Exception) -> bytes | None:
    """The revert payload of a failed call, from web3 (JSON-RPC) or eth-tester (embedded)."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    message = str(exc.args[0]) if exc.args else ""
    prefix = "execution reverted: "
    if message.startswith(prefix + "b'") or message.startswith(prefix + 'b"'):
        # eth-tester puts the payload's repr in the message.
        with contextlib.suppress(ValueError, SyntaxError):
            value = ast.literal_eval(message[len(prefix) :])
            if isinstance(value, bytes):
                return value
    return None


def revert_from(exc: Exception, errors: ErrorTable) -> ContractRevertError:
    """The revert as `ContractRevertError`, named and decoded by the custom error's selector."""
    data = _revert_data(exc)
    if data is not None and len(data) >= 4 and data[:4] in errors:
        name, types = errors[data[:4]]
        with contextlib.suppress(Exception):
            arguments = tuple(
                to_checksum_address(v) if t == "address" else v
                for t, v in zip(types, decode(types, data[4:]), strict=True)
            )
            return ContractRevertError(name, f"{name}{arguments}", arguments)
        return ContractRevertError(name, "0x" + data.hex())
    return ContractRevertError("unknown", str(exc))
