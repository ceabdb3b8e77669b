"""API keys in the SDK: who you are to a coordinator, and (with an admin key) managing keys."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tokenweave.v1 import auth_pb2


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a coordinator takes the caller to be."""

    client_id: str
    admin: bool
    key_id: str


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    key_id: str
    client_id: str
    admin: bool
    label: str
    created_at: dt.datetime | None
    revoked: bool


def key_info(proto: auth_pb2.ApiKey) -> ApiKeyInfo:
    created = proto.created_at.ToDatetime(dt.UTC) if proto.HasField("created_at") else None
    return ApiKeyInfo(
        proto.key_id, proto.client_id, proto.admin, proto.label, created, proto.revoked
    )
