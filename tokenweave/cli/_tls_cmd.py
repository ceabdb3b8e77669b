"""`tokenweave tls init`: a CA and a certificate for a coordinator that serves beyond loopback.

Off loopback a coordinator serves TLS only. For a private network (a compose testnet, a lab)
this makes what it needs, as `mkcert` would: `<dir>/ca.pem` (give it to nodes and clients:
--tls-ca or TOKENWEAVE_TLS_CA), `<dir>/coordinator.pem` and `<dir>/coordinator.key` (the
coordinator's --tls-cert and --tls-key), valid for the names given and for loopback. Run again,
it keeps the CA and issues a new certificate. A public coordinator uses a certificate from a
public CA instead.
"""

from __future__ import annotations

from pathlib import Path

from tokenweave._tls import LOCAL_NAMES, LocalCA


def init(directory: Path, hosts: list[str]) -> int:
    ca = LocalCA(directory)
    names = tuple(dict.fromkeys([*hosts, *LOCAL_NAMES]))
    files = ca.issue("coordinator", names)
    print(f"CA          {ca.cert_path}  (nodes and clients: --tls-ca)")
    print(f"certificate {files.cert}  (coordinator: --tls-cert)")
    print(f"key         {files.key}  (coordinator: --tls-key)")
    print(f"valid for   {', '.join(names)}")
    return 0
