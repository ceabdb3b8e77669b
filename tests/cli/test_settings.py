from pathlib import Path

import pytest

from tokenweave.cli._settings import layered, load_config_file
from tokenweave.coordinator import CoordinatorConfig
from tokenweave.errors import InvalidArgumentError
from tokenweave.node import NodeConfig


def test_flags_beat_environment_beat_file_beat_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tw.toml"
    config.write_text(
        "[node]\n"
        'coordinator = "file:1"\n'
        "batch_size = 7\n"
        "threads = 3\n"
        'providers = ["CPUExecutionProvider"]\n'
    )
    file = load_config_file(config)
    monkeypatch.setenv("TOKENWEAVE_COORDINATOR", "env:2")
    monkeypatch.setenv("TOKENWEAVE_BATCH_SIZE", "9")
    node = layered(NodeConfig, "node", {"coordinator": "flag:3", "batch_size": None}, file)
    assert node.coordinator == "flag:3"
    assert node.batch_size == 9
    assert node.threads == 3
    assert node.providers == ("CPUExecutionProvider",)
    assert node.max_inflight_shards == NodeConfig().max_inflight_shards


def test_paths_and_tuples_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWEAVE_DATA_DIR", "~/tw")
    monkeypatch.setenv("TOKENWEAVE_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    node = layered(NodeConfig, "node", {}, {})
    assert node.data_dir == Path("~/tw").expanduser()
    assert node.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_bad_values_name_their_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENWEAVE_WINDOWS_PER_SHARD", "many")
    with pytest.raises(
        InvalidArgumentError, match="TOKENWEAVE_WINDOWS_PER_SHARD: cannot read 'many'"
    ):
        layered(CoordinatorConfig, "coordinator", {}, {})
    with pytest.raises(InvalidArgumentError, match=r"\[coordinator\]: unknown keys colour"):
        layered(CoordinatorConfig, "coordinator", {}, {"coordinator": {"colour": "blue"}})
    broken = tmp_path / "broken.toml"
    broken.write_text("[node\n")
    with pytest.raises(InvalidArgumentError, match=r"broken\.toml"):
        load_config_file(broken)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    assert (
        CoordinatorConfig(data_dir=tmp_path).database_url
        == f"sqlite+aiosqlite:///{tmp_path}/coordinator.db"
    )
    assert (
        CoordinatorConfig(db="postgresql+asyncpg://x/y").database_url == "postgresql+asyncpg://x/y"
    )
