"""AuthService: developers' API keys (a thin adapter over `ApiKeys`)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from tokenweave.coordinator._auth import ApiKeys, KeyInfo, current_principal
from tokenweave.coordinator._servicers import Context
from tokenweave.v1 import auth_pb2, auth_pb2_grpc


def _key_proto(info: KeyInfo) -> auth_pb2.ApiKey:
    created = Timestamp()
    created.FromDatetime(dt.datetime.fromtimestamp(info.created_at, dt.UTC))
    return auth_pb2.ApiKey(
        key_id=info.key_id,
        client_id=info.client_id,
        admin=info.admin,
        label=info.label,
        created_at=created,
        revoked=info.revoked,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: Context
    ) -> auth_pb2.WhoAmIResponse:
        principal = current_principal()
        return auth_pb2.WhoAmIResponse(
            client_id=principal.client_id, admin=principal.admin, key_id=principal.key_id
        )

    async def CreateKey(
        self, request: auth_pb2.CreateKeyRequest, context: Context
    ) -> auth_pb2.CreateKeyResponse:
        key = await self._keys.create(request.client_id, request.admin, request.label)
        (info,) = [k for k in await self._keys.list(request.client_id) if key[3:15] == k.key_id]
        return auth_pb2.CreateKeyResponse(key=key, info=_key_proto(info))

    async def ListKeys(
        self, request: auth_pb2.ListKeysRequest, context: Context
    ) -> auth_pb2.ListKeysResponse:
        keys = await self._keys.list(request.client_id)
        return auth_pb2.ListKeysResponse(keys=[_key_proto(k) for k in keys])

    async def RevokeKey(
        self, request: auth_pb2.RevokeKeyRequest, context: Context
    ) -> auth_pb2.RevokeKeyResponse:
        return auth_pb2.RevokeKeyResponse(key=_key_proto(await self._keys.revoke(request.key_id)))
