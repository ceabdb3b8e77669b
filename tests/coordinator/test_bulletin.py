"""Coordinators' news over LISTEN/NOTIFY (coordinator/_bulletin.py): what one says reaches the
others, not itself; payloads stay under PostgreSQL's limit; silent on SQLite."""

from __future__ import annotations

import asyncio

from tokenweave.coordinator._bulletin import Bulletin, asyncpg_dsn, decode, encode


def test_payloads_round_trip_within_the_limit() -> None:
    jobs = {f"{i:032x}" for i in range(500)}
    payloads = encode("a" * 16, jobs, work=True)
    assert len(payloads) > 1
    assert all(len(p) <= 7_000 for p in payloads)
    heard: set[str] = set()
    work = False
    for payload in payloads:
        sender, some, more = decode(payload)
        assert sender == "a" * 16
        heard |= some
        work |= more
    assert heard == jobs
    assert work
    assert encode("a" * 16, set(), work=False) == []
    assert decode("garbage") == ("garbage", set(), False)


def test_only_postgresql_has_a_channel() -> None:
    assert asyncpg_dsn("sqlite+aiosqlite:///x.db") is None
    assert asyncpg_dsn("postgresql+asyncpg://u@h:5432/d") == "postgresql://u@h:5432/d"


async def test_news_reaches_the_other_coordinators(database_url: str) -> None:
    heard: dict[str, list[object]] = {"a": [], "b": []}
    got = asyncio.Event()

    def listener(name: str) -> tuple[object, object]:
        def on_job(job_id: str) -> None:
            heard[name].append(job_id)
            got.set()

        def on_work() -> None:
            heard[name].append("work")
            got.set()

        return on_job, on_work

    a = Bulletin(database_url, "a" * 16, *listener("a"))  # type: ignore[arg-type]
    b = Bulletin(database_url, "b" * 16, *listener("b"))  # type: ignore[arg-type]
    a.start()
    b.start()
    try:
        if asyncpg_dsn(database_url) is None:  # SQLite: nothing to say, nobody to hear
            a.job_changed("j1")
            await asyncio.sleep(0.1)
            assert heard == {"a": [], "b": []}
            return
        for _ in range(100):  # until both listen
            a.job_changed("j0")
            try:
                await asyncio.wait_for(got.wait(), 0.1)
                break
            except TimeoutError:
                continue
        heard["b"].clear()
        got.clear()
        a.job_changed("j1")
        a.job_changed("j2")
        a.work_added()
        await asyncio.wait_for(got.wait(), 5)
        await asyncio.sleep(0.2)
        assert sorted(map(str, heard["b"])) == ["j1", "j2", "work"]
        assert heard["a"] == [], "a coordinator does not hear itself"
    finally:
        await a.close()
        await b.close()
