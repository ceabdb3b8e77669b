"""Layered settings: command-line flags > TOKENWEAVE_* environment > TOML file > defaults."""

from __future__ import annotations

import dataclasses
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


def layered(cls: type[C], section: str, flags: dict[str, Any], file: dict[str, Any]) -> C:
    """Build config dataclass `cls`, each field from the first layer that sets it."""
    table = file.get(section, {})
    unknown = set(table) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise InvalidArgumentError(
            f"config file [{section}]: unknown keys {', '.join(sorted(unknown))}"
        )
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
