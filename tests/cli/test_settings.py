from pathlib import Path

import pytest

from tokenweave.cli._settings import check_config_file, layered, load_config_file
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
    with pytest.raises(InvalidArgumentError, match=r"\[coordinator\]: unknown key 'colour'"):
        layered(CoordinatorConfig, "coordinator", {}, {"coordinator": {"colour": "blue"}})
    with pytest.raises(InvalidArgumentError, match=r"'replica' \(did you mean 'replicas'\?\)"):
        layered(CoordinatorConfig, "coordinator", {}, {"coordinator": {"replica": 3}})
    broken = tmp_path / "broken.toml"
    broken.write_text("[node\n")
    with pytest.raises(InvalidArgumentError, match=r"broken\.toml"):
        load_config_file(broken)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_a_misspelled_table_or_client_key_is_an_error_not_ignored() -> None:
    check_config_file({"node": {}, "client": {"coordinator": "h:1", "tls_ca": "ca.pem"}})
    with pytest.raises(InvalidArgumentError, match=r"'cordinator' \(did you mean 'coordinator'"):
        check_config_file({"cordinator": {"listen": "0.0.0.0:1"}})
    with pytest.raises(InvalidArgumentError, match=r"\[client\]: unknown key 'apikey'"):
        check_config_file({"client": {"apikey": "tw_x"}})
    with pytest.raises(InvalidArgumentError, match=r"\[node\] must be a table"):
        check_config_file({"node": "fast"})


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    assert (
        CoordinatorConfig(data_dir=tmp_path).database_url
        == f"sqlite+aiosqlite:///{tmp_path}/coordinator.db"
    )
    assert (
        CoordinatorConfig(db="postgresql+asyncpg://x/y").database_url == "postgresql+asyncpg://x/y"
    )
