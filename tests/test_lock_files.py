"""The npm lock files are complete for every platform, so that `npm ci` installs from them
unchanged on any machine (an incomplete one was rewritten by `npm install`, leaving the tree
dirty after `make test`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("folder", ["contracts", "storage/reference", "docker"])
def test_every_optional_package_of_every_platform_is_locked(folder: str) -> None:
    lock = json.loads((ROOT / folder / "package-lock.json").read_text())
    manifest = json.loads((ROOT / folder / "package.json").read_text())
    packages = lock["packages"]
    assert packages[""]["devDependencies"] == manifest["devDependencies"], "lock is stale"
    for path, entry in packages.items():
        for name in entry.get("optionalDependencies", {}):
            locked = packages.get(f"node_modules/{name}")
            assert locked is not None, f"{folder}: {path} lists {name}, which is not locked"
            assert locked.get("version"), f"{folder}: {name} has no version"
            assert locked.get("integrity"), f"{folder}: {name} has no hash"
