"""Ids as people type and read them: any unique prefix is taken (as git takes a commit's), and
tables show ids short unless `--wide`.

Job ids are 32 hex characters, node addresses 42, CIDs 59: a table of them does not fit 120
columns. Tables show the first characters (enough to be typed back, as `git log --oneline`
does); every command that takes an id takes a unique prefix of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenweave.errors import InvalidArgumentError, NotFoundError

#: Characters a table shows of each kind of id.
SHORT = {"job": 8, "address": 12, "cid": 16, "node": 12}


def short(value: str, kind: str, wide: bool) -> str:
    """`value` as a table shows it: whole with `--wide`, else its first characters."""
    n = SHORT[kind]
    return value if wide or len(value) <= n + 1 else value[:n] + "…"


def resolve(prefix: str, candidates: Iterable[str], what: str) -> str:
    """The one candidate `prefix` starts (case-insensitive), or the error that says why not:
    none (NOT_FOUND), or several (INVALID_ARGUMENT, naming some)."""
    given = prefix.strip().lower()
    if not given:
        raise InvalidArgumentError(f"give a {what} (or the first characters of one)")
    found = sorted({c for c in candidates if c.lower().startswith(given)})
    exact = [c for c in found if c.lower() == given]
    if exact:
        return exact[0]
    if not found:
        raise NotFoundError(f"no {what} starts with {prefix!r}")
    if len(found) > 1:
        shown = ", ".join(found[:4]) + (", …" if len(found) > 4 else "")
        raise InvalidArgumentError(
            f"{what} {prefix!r} is ambiguous: it starts {len(found)} of them ({shown}); "
            "give more characters"
        )
    return found[0]
