"""tokenweave: a decentralized network for long-context AI inference.

    from tokenweave import Client
    with Client("127.0.0.1:50051") as client:
        result = client.embed([open("book.txt").read()]).result()

Packages: `tokenweave.client` (SDK), `tokenweave.cli` (the `tokenweave` command),
`tokenweave.coordinator`, `tokenweave.node`, `tokenweave.models` (ONNX models and tokenizers),
`tokenweave.errors` (the exception hierarchy), `tokenweave.v1` (generated gRPC stubs).

Packages whose public names pull in heavy dependencies (gRPC, web3, libp2p) import them on first
use through `_lazy_exports`, so that `import tokenweave` and the `tokenweave` command start fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


def _lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's PEP 562 `__getattr__` and `__dir__`: each name listed under a submodule
    (relative, like "._client") is imported from it on first use, then kept in the package.

        if TYPE_CHECKING:
            from tokenweave.client._client import Client
        else:
            __getattr__, __dir__ = _lazy_exports(__name__, {"._client": ("Client",)})
        __all__ = ["Client"]

    Type checkers and IDEs read the imports (and, seeing no `__getattr__`, still reject
    misspelt names); tests/test_public_api.py checks that imports, table and `__all__` agree.
    """
    origin = {name: module for module, names in exports.items() for name in names}

    def getattr_(name: str) -> Any:
        module = origin.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *origin})

    return getattr_, dir_


if TYPE_CHECKING:
    from tokenweave.client import Client, EmbedJob, EmbedResult
else:
    __getattr__, __dir__ = _lazy_exports(
        __name__, {".client": ("Client", "EmbedJob", "EmbedResult")}
    )

__all__ = ["Client", "EmbedJob", "EmbedResult", "__version__"]
