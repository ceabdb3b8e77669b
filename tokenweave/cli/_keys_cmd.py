"""`tokenweave whoami` and `tokenweave keys create/ls/revoke`: API keys (admin only but whoami)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenweave.client import Client


def add_keys_commands(
    sub: Any, add_client_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser("whoami", help="the client your API key belongs to")
    add_client_options(p)
    p = sub.add_parser("keys", help="developers' API keys (needs the admin key)")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ksub.add_parser("create", help="make a key for a client; it is shown once")
    kc.add_argument("client_id", metavar="CLIENT", help="1-64 of a-z 0-9 . _ -")
    kc.add_argument("--admin", action="store_true", help="an admin key (manages keys, all jobs)")
    kc.add_argument("--label", default="", help="a note kept with the key (e.g. where it lives)")
    kl = ksub.add_parser("ls", help="every key, or one client's")
    kl.add_argument(
        "--client", default="", metavar="CLIENT", help="only this client's keys (default: all)"
    )
    kl.add_argument("--json", action="store_true", help="one JSON array")
    kr = ksub.add_parser("revoke", help="revoke a key at once")
    kr.add_argument("key_id", metavar="KEY_ID", help="the 12 hex digits after tw_")
    for parser in (kc, kl, kr):
        add_client_options(parser)


def run(client: Client, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    if args.command == "whoami":
        me = client.whoami()
        out.print(f"{me.client_id}{' (admin)' if me.admin else ''}, key {me.key_id}")
        return 0
    if args.keys_command == "create":
        key = client.create_key(args.client_id, admin=args.admin, label=args.label)
        print(key)
        return 0
    if args.keys_command == "revoke":
        info = client.revoke_key(args.key_id)
        out.print(f"revoked key {info.key_id} of {info.client_id}")
        return 0
    keys = client.keys(args.client)
    if args.json:
        rows = [
            {
                "key_id": k.key_id,
                "client_id": k.client_id,
                "admin": k.admin,
                "label": k.label,
                "created_at": k.created_at.isoformat() if k.created_at else None,
                "revoked": k.revoked,
            }
            for k in keys
        ]
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table("key", "client", "admin", "label", "created", "revoked")
    for k in keys:
        created = k.created_at.strftime("%Y-%m-%d %H:%M:%S") if k.created_at else ""
        table.add_row(k.key_id, k.client_id, "yes" * k.admin, k.label, created, "yes" * k.revoked)
    out.print(table)
    return 0
