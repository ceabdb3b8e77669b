"""tokenweave: a decentralized network for long-context AI inference.

    from tokenweave import Client
    with Client("127.0.0.1:50051") as client:
        result = client.embed([open("book.txt").read()]).result()

Packages: `tokenweave.client` (SDK), `tokenweave.cli` (the `tokenweave` command),
`tokenweave.coordinator`, `tokenweave.node`, `tokenweave.models` (ONNX models and tokenizers),
`tokenweave.errors` (the exception hierarchy), `tokenweave.v1` (generated gRPC stubs).
"""

__version__ = "0.1.0"

from tokenweave.client import Client, EmbedJob, EmbedResult

__all__ = ["Client", "EmbedJob", "EmbedResult", "__version__"]
