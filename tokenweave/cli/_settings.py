"""Layered settings: command-line flags > TOKENWEAVE_* environment > TOML file > defaults."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from tokenweave.errors import InvalidArgumentError

C = TypeVar("C")


def _convert(raw: Any, annotation: str, source: str) -> Any:
    try:
        if "tuple" in annotation:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if "Path" in annotation:
            return Path(raw).expanduser()
        if "bool" in annotation:
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
        if "int" in annotation and "float" not in annotation:
            return int(raw)
        if "float" in annotation:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{source}: cannot read {raw!r} as {annotation}") from exc


def load_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        env = os.environ.get("TOKENWEAVE_CONFIG")
        path = Path(env) if env else None
    if path is None:
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgumentError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"config file {path}: {exc}") from exc


#: The config file's tables, and the keys of [client] (the daemons' tables are their configs').
SECTIONS = ("coordinator", "node", "client")
CLIENT_KEYS = ("coordinator", "api_key", "tls_ca")


def _unknown(what: str, found: set[str], known: tuple[str, ...] | set[str]) -> None:
    """Refuse keys the file should not have, each with the closest known one."""
    unknown = sorted(found - set(known))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    listed = f"; known: {', '.join(sorted(known))}" if len(known) <= 8 else ""
    raise InvalidArgumentError(
        f"config file {what}: unknown {'key' if len(unknown) == 1 else 'keys'} "
        f"{', '.join(hints)}{listed}"
    )


def check_config_file(file: dict[str, Any]) -> None:
    """A misspelled table or [client] key is an error, not silently ignored."""
    _unknown("tables", set(file), SECTIONS)
    for section in SECTIONS:
        if not isinstance(file.get(section, {}), dict):
            raise InvalidArgumentError(f"config file: [{section}] must be a table")
    _unknown("[client]", set(file.get("client", {})), CLIENT_KEYS)


def layered(cls: type[C], section: str, flags: dict[str, Any], file: dict[str, Any]) -> C:
    """Build config dataclass `cls`, each field from the first layer that sets it."""
    table = file.get(section, {})
    _unknown(f"[{section}]", set(table), {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        annotation = str(field.type)
        env_name = f"TOKENWEAVE_{field.name.upper()}"
        if flags.get(field.name) is not None:
            values[field.name] = _convert(flags[field.name], annotation, f"--{field.name}")
        elif os.environ.get(env_name):
            values[field.name] = _convert(os.environ[env_name], annotation, env_name)
        elif field.name in table:
            values[field.name] = _convert(
                table[field.name], annotation, f"[{section}] {field.name}"
            )
    return cls(**values)
