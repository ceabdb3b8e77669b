"""Root CIDs equal those of IPFS's own UnixFS importer (fixtures from storage/reference)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tokenweave.errors import InvalidArgumentError
from tokenweave.storage import (
    CID,
    DAG_PB,
    DEFAULT_PROFILE,
    RAW,
    Block,
    ImportProfile,
    check_entry_name,
    import_directory,
    import_file,
    profile_named,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "unixfs_cids.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["cases"]


def content(n: int) -> bytes:
    """The fixture generator: byte i is (i * 31 + 7) % 251."""
    return ((np.arange(n, dtype=np.int64) * 31 + 7) % 251).astype(np.uint8).tobytes()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['profile']}-{c['size']}")
def test_root_cid_matches_ipfs(case: dict[str, Any]) -> None:
    profile = ImportProfile(case["profile"], case["chunkSize"], case["maxChildrenPerNode"])
    blocks: list[Block] = []
    root = import_file(io.BytesIO(content(case["size"])), blocks.append, profile)
    assert str(root.cid) == case["cid"]
    assert root.tsize == case["dagSize"]
    assert root.filesize == case["size"]
    assert blocks[-1].cid == root.cid, "the root comes last"
    assert all(b.cid.verify(b.data) for b in blocks)
    leaves = [b for b in blocks if b.cid.codec == RAW]
    assert b"".join(b.data for b in leaves) == content(case["size"])


def test_the_named_profiles() -> None:
    assert profile_named("unixfs-v1-2025") == DEFAULT_PROFILE
    assert (DEFAULT_PROFILE.chunk_size, DEFAULT_PROFILE.max_links) == (1 << 20, 1024)
    kubo = profile_named("kubo")
    assert (kubo.chunk_size, kubo.max_links) == (256 << 10, 174)
    with pytest.raises(InvalidArgumentError, match="unknown profile 'ipfs'"):
        profile_named("ipfs")
    with pytest.raises(InvalidArgumentError, match="max_links"):
        ImportProfile("bad", 1024, 1)


def test_fixtures_are_what_the_reference_importer_gives(tmp_path: Path) -> None:
    reference = ROOT / "storage" / "reference"
    if not (reference / "node_modules" / "ipfs-unixfs-importer").exists() or not shutil.which(
        "node"
    ):
        pytest.skip("the reference importer is not installed (make setup installs it)")
    copy = tmp_path / "storage" / "reference"
    copy.mkdir(parents=True)
    (tmp_path / "tests" / "fixtures").mkdir(parents=True)
    shutil.copy(reference / "cids.mjs", copy / "cids.mjs")
    (copy / "node_modules").symlink_to(reference / "node_modules")
    (copy / "package.json").symlink_to(reference / "package.json")
    subprocess.run(["node", "cids.mjs"], cwd=copy, check=True, capture_output=True)
    fresh = json.loads((tmp_path / "tests" / "fixtures" / "unixfs_cids.json").read_text())
    assert fresh["cases"] == CASES


def test_cids_round_trip_and_refuse_garbage() -> None:
    cid = CID.of(DAG_PB, b"node")
    assert CID.parse(str(cid)) == cid
    assert CID.from_bytes(bytes(cid)) == cid
    assert cid.codec_name == "dag-pb"
    assert str(CID.of(RAW, b"")) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

    def text(raw: bytes) -> str:
        return "b" + base64.b32encode(raw).decode().lower().rstrip("=")

    for bad, message in [
        ("Qmfoo", "should start with 'b'"),
        ("b!!!!!!!!!!!", "not valid base32"),
        (text(bytes(cid)[:-1]), "digest is 31 bytes"),
        (text(b"\x00" + bytes(cid)[1:]), "CID version 0 is not supported"),
        (text(bytes(cid)[:1] + b"\x71" + bytes(cid)[2:]), "codec 0x71 is not supported"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            CID.parse(bad)


DIRECTORIES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["directories"]


@pytest.mark.parametrize("case", DIRECTORIES, ids=lambda c: c["profile"])
def test_directory_cids_match_ipfs(case: dict[str, Any], tmp_path: Path) -> None:
    for path, size in case["files"]:
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content(size))
    profile = ImportProfile(case["profile"], case["chunkSize"], case["maxChildrenPerNode"])
    blocks: list[Block] = []
    root = import_directory(tmp_path / "d", blocks.append, profile)
    expected = {e["path"]: e for e in case["entries"]}
    assert str(root.cid) == expected["d"]["cid"]
    assert root.tsize == expected["d"]["dagSize"]
    cids = {str(b.cid) for b in blocks}
    assert all(e["cid"] in cids for e in case["entries"])


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x", "nul\0"])
def test_entry_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="is not allowed"):
        check_entry_name(name)


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArgumentError, match="symbolic link"):
        import_directory(tmp_path / "d", lambda b: None)


def test_content_defined_chunking_keeps_blocks_across_an_insertion() -> None:
    rng = np.random.default_rng(7)
    original = rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    edited = original[:1_000_000] + b"a few inserted bytes" + original[1_000_000:]

    def leaves(data: bytes, profile: ImportProfile) -> set[CID]:
        blocks: list[Block] = []
        import_file(io.BytesIO(data), blocks.append, profile)
        return {b.cid for b in blocks if b.cid.codec == RAW}

    cdc, fixed = profile_named("fastcdc"), profile_named("kubo")
    shared_cdc = len(leaves(original, cdc) & leaves(edited, cdc)) / len(leaves(original, cdc))
    shared_fixed = len(leaves(original, fixed) & leaves(edited, fixed)) / len(
        leaves(original, fixed)
    )
    assert shared_cdc > 0.7
    assert shared_fixed < 0.4
    blocks: list[Block] = []
    root = import_file(io.BytesIO(edited), blocks.append, cdc)
    assert root.filesize == len(edited)
    assert b"".join(b.data for b in blocks if b.cid.codec == RAW) == edited
    assert max(len(b.data) for b in blocks) <= 4 * cdc.chunk_size


def test_content_defined_chunk_sizes_are_bounded() -> None:
    with pytest.raises(InvalidArgumentError, match="content-defined average chunk"):
        ImportProfile("huge", 1 << 20, 174, content_defined=True)
    blocks: list[Block] = []
    root = import_file(io.BytesIO(b""), blocks.append, profile_named("fastcdc"))
    assert str(root.cid) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
