"""Paged listings: ListJobs and ListNodes return bounded pages and an opaque token for the next.

Pages are keyset pages: a token names the last row a page held (a job's creation time and id, a
node's id), and the next page starts after it, so rows added meanwhile neither repeat nor shift
a page. Tokens are base64url text a client passes back untouched; anything the server did not
make is refused with INVALID_ARGUMENT. A well-formed forged token can only position the cursor,
which any client may do by paging.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._convert import job_from_row
from tokenweave.coordinator._db import JobRow
from tokenweave.errors import InvalidArgumentError
from tokenweave.types import JobInfo

#: The longest page token the server makes (a job id and a timestamp fit well within).
MAX_TOKEN_CHARS = 256


@dataclass(frozen=True, slots=True)
class PageSizes:
    """A listing's default and largest page; `legacy_max` bounds 0.1's `limit` field."""

    default: int
    largest: int
    legacy_max: int = 0

    def resolve(self, page_size: int, legacy_limit: int = 0) -> int:
        if page_size:
            if page_size > self.largest:
                raise InvalidArgumentError(
                    f"page_size={page_size} is above the maximum of {self.largest}"
                )
            return page_size
        if legacy_limit:
            if legacy_limit > self.legacy_max:
                raise InvalidArgumentError(
                    f"limit={legacy_limit} is above the maximum of {self.legacy_max}"
                )
            return legacy_limit
        return self.default


JOB_PAGES = PageSizes(default=50, largest=500, legacy_max=1000)
NODE_PAGES = PageSizes(default=200, largest=1000)


def encode_token(kind: str, *values: str) -> str:
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str, fields: int) -> list[str]:
    """The `fields` values of a `kind` token, or `InvalidArgumentError`."""
    refused = InvalidArgumentError(
        f"page_token is not a {kind} page token this server made; pass back next_page_token "
        "unchanged, or leave it empty for the first page"
    )
    if len(token) > MAX_TOKEN_CHARS:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise refused from None
    if (
        not isinstance(values, list)
        or len(values) != fields + 1
        or values[0] != kind
        or not all(isinstance(v, str) and v for v in values[1:])
    ):
        raise refused
    return values[1:]


def node_token(last_node_id: str) -> str:
    return encode_token("nodes", last_node_id)


def after_node(token: str) -> str:
    """The node id a ListNodes token continues after ("" for the first page)."""
    return decode_token("nodes", token, 1)[0] if token else ""


class JobListing:
    """ListJobs' pages, read straight from the jobs table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def page(
        self, size: int, token: str, owner: str | None = None
    ) -> tuple[list[JobInfo], str]:
        return await recent_jobs(self._sessions, size, token, owner)


async def recent_jobs(
    sessions: async_sessionmaker[AsyncSession], size: int, token: str, owner: str | None = None
) -> tuple[list[JobInfo], str]:
    """A page of jobs, newest first (ties by id), and the next page's token ("" when last);
    only `owner`'s when given."""
    query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.job_id.desc())
    if owner is not None:
        query = query.where(JobRow.owner == owner)
    if token:
        created, job_id = decode_token("jobs", token, 2)
        try:
            after = dt.datetime.fromisoformat(created)
        except ValueError:
            after = None
        if after is None or after.tzinfo is not None:
            raise InvalidArgumentError("page_token is not a jobs page token this server made")
        query = query.where(
            or_(
                JobRow.created_at < after,
                and_(JobRow.created_at == after, JobRow.job_id < job_id),
            )
        )
    async with sessions() as session:
        rows = list(await session.scalars(query.limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    next_token = (
        encode_token("jobs", rows[-1].created_at.isoformat(), rows[-1].job_id) if more else ""
    )
    return [job_from_row(r) for r in rows], next_token
